"""Make the bundled sample images, deterministically, from shapes drawn with Pillow.

    python tools/make_samples.py

Writes into sample_images/ at the repository root:

* duck.png        530x612 RGB: a duck on a pond (edges in both directions, curves, flat areas)
* scene.png       640x400 RGB: a building with windows, text and a sky gradient
* badge.png       96x96 RGBA: a badge on a partly transparent background
* gradient16.png  256x192 16-bit grayscale: a smooth gradient with shapes

Nothing is random except through fixed seeds, and PNGs carry no timestamps, so
two runs give identical bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent.parent / "sample_images"


def duck() -> Image.Image:
    width, height = 530, 612
    image = Image.new("RGB", (width, height), (178, 216, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 150), fill=(150, 200, 235))  # upper sky band
    draw.ellipse((400, 40, 480, 120), fill=(255, 222, 90))  # sun
    draw.rectangle((0, 400, width, height), fill=(52, 120, 170))  # pond
    draw.rectangle((0, 392, width, 400), fill=(90, 150, 80))  # far bank
    for y in range(430, height, 36):  # ripples
        for x in range(20 + (y // 36 % 2) * 40, width, 120):
            draw.arc((x, y, x + 70, y + 14), 200, 340, fill=(200, 230, 250), width=3)
    draw.ellipse((95, 300, 425, 500), fill=(250, 214, 40), outline=(120, 90, 10), width=3)  # body
    draw.polygon([(110, 360), (40, 300), (70, 390)], fill=(250, 214, 40), outline=(120, 90, 10))  # tail
    draw.chord((170, 330, 360, 450), 0, 180, fill=(230, 180, 30), outline=(120, 90, 10), width=3)  # wing
    for offset in (0, 18, 36):  # wing feathers
        draw.arc((200 + offset, 360, 330 + offset // 2, 430), 20, 160, fill=(150, 110, 20), width=2)
    draw.rectangle((300, 230, 350, 330), fill=(250, 214, 40))  # neck
    draw.ellipse((255, 130, 405, 280), fill=(250, 214, 40), outline=(120, 90, 10), width=3)  # head
    draw.polygon(
        [(395, 195), (470, 205), (470, 222), (395, 232)], fill=(245, 130, 30), outline=(150, 70, 10)
    )  # beak
    draw.line((400, 214, 468, 214), fill=(150, 70, 10), width=2)
    draw.ellipse((345, 170, 375, 200), fill=(255, 255, 255), outline=(0, 0, 0), width=2)  # eye
    draw.ellipse((356, 178, 372, 194), fill=(20, 20, 20))
    draw.rectangle((95, 492, 425, 500), fill=(40, 100, 150))  # waterline
    for x in range(0, width, 45):  # reeds: vertical edges
        if 30 < x < 470:
            continue
        draw.rectangle((x, 250, x + 8, 400), fill=(60, 110, 40))
        draw.ellipse((x - 4, 230, x + 12, 280), fill=(110, 70, 30))
    return image


def scene() -> Image.Image:
    width, height = 640, 400
    sky = np.linspace(0, 1, height)[:, None] * np.ones((1, width))
    rgb = np.stack([90 + 120 * sky, 140 + 90 * sky, 230 - 40 * sky], axis=2)
    image = Image.fromarray(np.rint(rgb).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 330, width, height), fill=(70, 70, 75))  # street
    for x in range(0, width, 80):
        draw.rectangle((x + 10, 362, x + 50, 368), fill=(240, 240, 240))
    draw.rectangle((60, 90, 300, 330), fill=(170, 90, 70), outline=(60, 30, 20), width=2)
    for row in range(5):
        for col in range(4):
            x, y = 80 + col * 55, 110 + row * 42
            draw.rectangle((x, y, x + 35, y + 28), fill=(230, 235, 180), outline=(40, 40, 40), width=2)
            draw.line((x + 17, y, x + 17, y + 28), fill=(40, 40, 40), width=1)
    draw.rectangle((360, 150, 580, 330), fill=(200, 200, 210), outline=(50, 50, 60), width=2)
    for x in range(370, 580, 30):
        draw.line((x, 160, x, 320), fill=(90, 90, 110), width=3)
    draw.polygon([(350, 150), (470, 80), (590, 150)], fill=(120, 60, 50))
    draw.line((0, 330, width, 330), fill=(20, 20, 20), width=3)
    font = ImageFont.load_default(size=28)
    draw.text((330, 20), "convcli 3x3", fill=(20, 20, 60), font=font)
    draw.text((380, 250), "CAFE", fill=(180, 20, 20), font=font)
    return image


def badge() -> Image.Image:
    size = 96
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(yy - 47.5, xx - 47.5)
    alpha = np.where(radius < 34, 255, np.where(radius < 44, 128, 0)).astype(np.uint8)
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[..., 0] = np.where(radius < 34, 200, 60)
    rgb[..., 1] = np.where(radius < 34, 40, 120)
    rgb[..., 2] = np.where(radius < 34, 60, 220)
    image = Image.fromarray(np.dstack([rgb, alpha]))
    draw = ImageDraw.Draw(image)
    draw.polygon(
        [(48, 22), (56, 42), (76, 42), (60, 54), (66, 74), (48, 62), (30, 74), (36, 54), (20, 42), (40, 42)],
        fill=(255, 230, 80, 255),
    )
    return image


def gradient16() -> Image.Image:
    width, height = 256, 192
    ramp = np.linspace(1000, 64000, width)[None, :] * np.ones((height, 1))
    yy, xx = np.mgrid[0:height, 0:width]
    ramp[(xx - 70) ** 2 + (yy - 96) ** 2 < 40**2] = 60000
    ramp[30:80, 150:230] = 5000
    ramp[120:170, 140:240] = np.linspace(40000, 10000, 100)[None, :]
    return Image.fromarray(np.rint(ramp).astype(np.uint16))


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, make in (
        ("duck.png", duck),
        ("scene.png", scene),
        ("badge.png", badge),
        ("gradient16.png", gradient16),
    ):
        image = make()
        path = OUT / name
        image.save(path, optimize=True)
        print(
            f"{path.relative_to(OUT.parent)}: {image.size[0]}x{image.size[1]} {image.mode}, "
            f"{path.stat().st_size:,} bytes"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
