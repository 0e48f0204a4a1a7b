"""One image file -> uint8 array (h, w, c) the model's input size, by documented rules.

1. Open with Pillow; the first frame of an animated image; EXIF orientation applied.
2. Colour: 16-bit grey scaled to 8 bits (value * 255 / 65535), and 32-bit integer grey too when
   its values exceed 255 (else taken as 8-bit); float grey in [0, 1] times 255; CMYK, palette and
   YCbCr converted by Pillow; transparency (RGBA, LA, palette with a transparent colour)
   composited over white. Then RGB for 3 channels, or luma L = 0.299 R + 0.587 G + 0.114 B for 1.
3. Size: `stretch` resizes to h x w (bilinear, antialiased); `crop` first cuts the largest centred
   region with the target's aspect ratio, then resizes; `imagenet` is ImageNet's evaluation rule
   (TensorFlow's EfficientNet, timm's crop_pct 0.875): the centred region of 224/256 of that
   largest region (for a square input, 224/256 of the shorter side: resize the shorter side to
   256 and centre-crop 224), resized bicubic, its box in sub-pixel coordinates.
A file that is unreadable, truncated, empty, not an image, deleted since it was listed, or over
Pillow's decompression-bomb limit raises BadImage with the reason; it is never replaced by a blank
image.
"""

import math
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

RESIZE_RULE = {"stretch": "bilinear resize to h x w", "crop": "centre crop to the aspect ratio, then bilinear resize",
               "imagenet": "centre crop of 224/256 of the largest region with the aspect ratio (the shorter side "
                           "for a square input), then bicubic resize"}
IMAGENET_SHARE = 224 / 256   # ImageNet evaluation's centre crop: 224 of the shorter side resized to 256
COLOR_RULE = ("16-bit scaled by 255/65535; alpha composited over white; "
              "channels 1 = luma 0.299R+0.587G+0.114B, 3 = RGB")


class BadImage(Exception):
    """The file cannot be used; str() is the reason shown to the user."""


GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ROTATED = (5, 6, 7, 8)   # EXIF orientations that swap width and height


def load_image(path, height, width, channels, resize="stretch", source=None):
    """-> uint8 (height, width, channels). `source`, a dict, receives what the file was before
    conversion: 'size' (w, h) upright, and 'gray' (a one-channel image)."""
    try:
        if path.stat().st_size == 0:
            raise BadImage("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if source is not None:
                    w0, h0 = img.size
                    upright = img.getexif().get(0x0112) in ROTATED
                    source.update(size=(h0, w0) if upright else (w0, h0), gray=img.mode in GRAY_MODES)
                if img.format == "JPEG":   # imagenet keeps 224/256 of the region: draft that much more
                    more = 1 / IMAGENET_SHARE if resize == "imagenet" else 1
                    img.draft("RGB" if channels == 3 else "L", (math.ceil(width * more), math.ceil(height * more)))
                img.load()
                img = ImageOps.exif_transpose(img)
                img = _to_mode(img, channels)
                img = _resize(img, height, width, resize)
                arr = np.asarray(img, dtype=np.uint8)
    except BadImage:
        raise
    except Image.DecompressionBombError as e:
        raise BadImage(f"too large for Pillow's decompression-bomb limit ({e})") from None
    except Image.DecompressionBombWarning as e:
        raise BadImage(f"over Pillow's decompression-bomb limit ({e})") from None
    except UnidentifiedImageError:
        raise BadImage("not an image Pillow can read") from None
    except FileNotFoundError:
        raise BadImage("deleted after it was listed") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e) or e.__class__.__name__
        raise BadImage(f"cannot decode: {msg}") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def _to_mode(img, channels):
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit grey or float: to 8-bit L
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and a.max(initial=0) > 255):
            a = a * (255.0 / 65535.0)
        elif img.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        img = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    target = "RGB" if channels == 3 else "L"
    return img if img.mode == target else img.convert(target)


def _resize(img, height, width, rule):
    if rule == "imagenet":
        return img.resize((width, height), Image.Resampling.BICUBIC, box=imagenet_box(*img.size, height, width))
    if img.size == (width, height):
        return img
    if rule == "crop":
        return ImageOps.fit(img, (width, height), method=Image.Resampling.BILINEAR)
    return img.resize((width, height), Image.Resampling.BILINEAR)


def imagenet_box(w, h, height, width):
    """The `imagenet` rule's source box (left, top, right, bottom), in pixels, fractional: the
    largest centred region with the target's aspect ratio, scaled by 224/256 about its centre."""
    scale = min(w / width, h / height) * IMAGENET_SHARE
    cw, ch = width * scale, height * scale
    left, top = (w - cw) / 2, (h - ch) / 2
    return left, top, left + cw, top + ch
