"""The vocabulary shared by the library and the command line, in one place (pure Python).

The CLI's choices and help text are built from these, so that an option's
documented values are always the ones the library accepts.
"""

PAD_MODES = ("zeros", "reflect", "replicate", "circular")  # PyTorch's F.pad
MODES = ("correlation", "convolution")  # filter and upsample
POOL_OPS = ("max", "mean", "min")
VALUE_MAPS = ("auto", "clip", "abs", "normalize", "offset")  # float results -> 8/16-bit pixels
DEPTHS = ("8", "16", "float")
GRAY_MODES = ("luma", "mean")  # --gray: 0.299 R + 0.587 G + 0.114 B, or (R + G + B) / 3
# Output formats by extension: (Pillow format, depths it can hold).
OUTPUT_FORMATS = {
    ".png": ("PNG", ("8", "16")),
    ".tif": ("TIFF", ("8", "16", "float")),
    ".tiff": ("TIFF", ("8", "16", "float")),
    ".jpg": ("JPEG", ("8",)),
    ".jpeg": ("JPEG", ("8",)),
    ".bmp": ("BMP", ("8",)),
    ".webp": ("WEBP", ("8",)),
    ".npy": ("NPY", ("float",)),
}
STREAM_FORMATS = tuple(suffix[1:] for suffix in OUTPUT_FORMATS)  # -o - with --format
DEFAULT_MAX_PIXELS = 200_000_000
DEFAULT_CHUNK = 2048  # input rows and columns per block of a huge image, when nothing says less
