"""``convcli shape`` (placeholder until the calculator lands)."""


def shape_command(size: str):
    """Output-size calculator."""
    raise NotImplementedError
