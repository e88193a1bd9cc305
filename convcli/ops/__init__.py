"""Operation objects: filter, pool and upsample, each built and validated once.

``OPERATIONS`` maps names to classes once :mod:`convcli.ops.catalog` is imported.
"""
