"""FoleyWorld pictures: frames (F, H, W, 3) uint8 from a scene and its simulation, drawn with numpy and PIL.

Static layers (the room backdrop, instrument stands and bars, vehicle sprites, body sprites pre-rotated into 32
angle bins with material textures and analytic anti-aliasing) are drawn once per clip; each frame pastes sprites,
draws the strikers, rain streaks and wind-blown particles. The backdrop shows the room: an outdoor scene (sky,
hills, road, ground) is "dry", a papered small room and a tall hall with columns are the reverberant rooms.
Off-screen sources are never drawn. Not a published method; a fast, legible toy renderer.
"""
from __future__ import annotations

import numpy as np

from foleyflow.world.config import WorldConfig
from foleyflow.world.physics import Simulation, body_vertices, instrument_geometry
from foleyflow.world.scene import FLOOR_Y, WORLD_W, Body, Scene, Vehicle

ANGLE_BINS = 32


def to_px(x_m, y_m, size: int):
    """World metres -> pixel (column, row) floats; row 0 is the top of the frame."""
    k = size / WORLD_W
    return np.asarray(x_m) * k, (WORLD_W - np.asarray(y_m)) * k


def _gradient(h: int, w: int, top, bottom) -> np.ndarray:
    a = np.linspace(0, 1, h)[:, None, None]
    return np.broadcast_to((1 - a) * np.asarray(top, float) + a * np.asarray(bottom, float), (h, w, 3)).copy()


def backdrop(scene: Scene, size: int) -> np.ndarray:
    """(size, size, 3) float32 in 0..255: the room, the floor line at FLOOR_Y, and a road when outdoors."""
    rng = np.random.default_rng([scene.seed, 0xBAC])
    tint = rng.uniform(-12, 12, 3)
    _, floor_row = to_px(0, FLOOR_Y, size)
    fr = int(round(float(floor_row)))
    img = np.zeros((size, size, 3))
    cols = np.arange(size)[None, :]
    rows = np.arange(size)[:, None]
    if scene.room == "dry":
        sky_top, sky_bot = ((95, 105, 120), (150, 155, 165)) if scene.rain else ((70, 140, 225), (175, 210, 240))
        img[:] = _gradient(size, size, sky_top, sky_bot)
        _, horizon = to_px(0, 2.3, size)
        hills = horizon - (np.sin(cols / size * 6 + rng.uniform(0, 6)) * 0.04 + 0.03) * size
        img[(rows >= hills) & (rows < fr)] = (95, 140, 80)
        _, r0 = to_px(0, 1.95, size)
        _, r1 = to_px(0, 1.2, size)
        img[int(r0):int(r1)] = (90, 90, 95)
        dash = (rows == int((r0 + r1) / 2)) & ((cols // max(2, size // 16)) % 2 == 0)
        img[np.broadcast_to(dash, (size, size))] = (220, 220, 200)
        img[fr:] = _gradient(size - fr, size, (120, 100, 70), (90, 75, 55))
    elif scene.room == "small_room":
        img[:] = _gradient(size, size, (215, 195, 160), (190, 170, 135))
        stripes = ((cols * 10 // size) % 2 == 0)
        img[:fr] *= np.where(stripes, 0.93, 1.0)[..., None][:1]
        side = size // 10
        for c0, c1 in ((0, side), (size - side, size)):
            img[:fr, c0:c1] *= 0.72
        img[fr:] = _gradient(size - fr, size, (150, 95, 55), (120, 75, 45))
        boards = (cols * 8 // size) % 2 == 0
        img[fr:] *= np.where(boards, 0.9, 1.0)[..., None][:1]
        f0, f1 = size // 3, size * 2 // 3           # a framed picture on the wall
        img[size // 6:size // 3, f0:f1] = (90, 60, 40)
        img[size // 6 + 2:size // 3 - 2, f0 + 2:f1 - 2] = (120, 160, 190)
    else:  # hall
        img[:] = _gradient(size, size, (45, 45, 60), (95, 90, 100))
        pitch = size // 5
        col_mask = (cols % pitch) < pitch // 4
        img[:fr] = np.where(col_mask[..., None][:1], img[:fr] * 1.6, img[:fr])
        win = (rows < size // 6) & (rows > size // 20) & ((cols % pitch) > pitch // 3) & ((cols % pitch) < pitch * 3 // 4)
        img[win] = (170, 180, 200)
        checker = ((rows // max(2, size // 24)) + (cols // max(2, size // 12))) % 2 == 0
        floor = np.where(checker[..., None], np.array([70, 65, 60]), np.array([120, 115, 105]))
        img[fr:] = floor[fr:]
    img[fr - 1:fr + 1] *= 0.6   # the floor line
    return np.clip(img + tint, 0, 255).astype(np.float32)


def _signed_distance(body: Body, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Distance (metres) inside the body's outline (positive inside) at body coordinates u, v."""
    if body.shape == "ball":
        return body.size_m / 2 - np.hypot(u, v)
    verts = body_vertices(body)
    d = np.full(u.shape, np.inf)
    for p, q in zip(verts, np.roll(verts, -1, 0)):
        e = q - p
        d = np.minimum(d, (e[0] * (v - p[1]) - e[1] * (u - p[0])) / np.hypot(*e))
    return d


def _texture(body: Body, u: np.ndarray, v: np.ndarray):
    """(rgb (..., 3), alpha scale (...)) of the body's material at body coordinates."""
    base = np.asarray(body.color, float)
    s = body.size_m
    alpha = np.ones(u.shape)
    m = body.material
    if m == "wood":
        shade = 0.82 + 0.18 * np.sin(u * 55 + 5 * np.sin(v * 9))
        rgb = base * shade[..., None]
    elif m == "metal":
        shade = 0.7 + 0.5 * np.exp(-((u + v) / (0.25 * s)) ** 2)
        rgb = np.clip(base * shade[..., None], 0, 255)
    elif m == "glass":
        rgb = np.broadcast_to(base, u.shape + (3,)).copy()
        streak = np.abs(u - 0.3 * v + 0.15 * s) < 0.05 * s
        rgb[streak] = (250, 250, 255)
        alpha = np.where(streak, 0.95, 0.7)
    elif m == "plastic":
        rgb = np.broadcast_to(base, u.shape + (3,)).copy()
        gloss = np.hypot(u + 0.18 * s, v - 0.18 * s) < 0.08 * s
        rgb[gloss] = rgb[gloss] * 0.3 + 178
    else:  # foam: soft with pores
        pores = (np.sin(u * 120) * np.sin(v * 120)) > 0.75
        rgb = base * np.where(pores, 0.8, 1.0)[..., None]
    return rgb, alpha


def body_sprites(body: Body, size: int) -> tuple[list, int]:
    """ANGLE_BINS RGBA PIL images of the body rotated by k * 2 pi / ANGLE_BINS, and their side in pixels."""
    from PIL import Image

    k = size / WORLD_W
    radius = float(np.max(np.hypot(*body_vertices(body).T)))
    side = int(np.ceil(2 * radius * k)) + 3
    c = (side - 1) / 2
    rr, cc = np.mgrid[0:side, 0:side].astype(float)
    x, y = (cc - c) / k, (c - rr) / k
    out = []
    for b in range(ANGLE_BINS):
        a = 2 * np.pi * b / ANGLE_BINS
        u, v = np.cos(a) * x + np.sin(a) * y, -np.sin(a) * x + np.cos(a) * y
        d_px = _signed_distance(body, u, v) * k
        rgb, alpha = _texture(body, u, v)
        rim = np.clip(1.6 - d_px, 0, 1)
        rgb = rgb * (1 - 0.5 * rim[..., None])
        alpha = np.maximum(alpha, rim)          # outlines are opaque, even on glass
        cover = np.clip(d_px + 0.5, 0, 1) * alpha
        rgba = np.concatenate([np.clip(rgb, 0, 255), cover[..., None] * 255], -1).astype(np.uint8)
        out.append(Image.fromarray(rgba, "RGBA"))
    return out, side


def vehicle_sprite(v: Vehicle, size: int):
    """An RGBA side view of the vehicle, facing its direction of travel, scaled by its depth."""
    from PIL import Image, ImageDraw

    length_m = {"car": 4.5, "van": 5.5, "truck": 8.0}[v.kind]
    w = max(6, int(round(length_m / v.road_width_m * size)))
    h = max(4, int(round(w * (0.45 if v.kind == "car" else 0.55))))
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    body_top = h * 0.35 if v.kind == "car" else h * 0.1
    d.rectangle([0, body_top, w - 1, h * 0.8], fill=v.color + (255,), outline=(20, 20, 20, 255))
    if v.kind == "car":
        d.rectangle([w * 0.25, 0, w * 0.7, body_top], fill=tuple(int(c * 0.8) for c in v.color) + (255,))
        d.rectangle([w * 0.3, h * 0.06, w * 0.65, body_top - 1], fill=(170, 200, 230, 255))
    else:
        cab = (w * 0.78, h * 0.1, w - 1, h * 0.8)
        d.rectangle(cab, fill=tuple(int(c * 0.8) for c in v.color) + (255,))
        d.rectangle([w * 0.82, h * 0.15, w - 2, h * 0.45], fill=(170, 200, 230, 255))
    r = max(1.5, h * 0.2)
    for cx in (w * 0.2, w * 0.8):
        d.ellipse([cx - r, h - 2 * r - 0.5, cx + r, h - 0.5], fill=(25, 25, 25, 255))
    if v.speed_mps < 0:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def road_row(v: Vehicle, size: int) -> float:
    """The pixel row where the vehicle's wheels touch the road (farther roads sit higher)."""
    return float(to_px(0, 1.25 + 0.6 * (v.depth_m - 10) / 15, size)[1])


def instrument_layer(scene: Scene, size: int):
    """An RGBA layer with every on-screen instrument's static parts (bars, keys, tubes, stands, drums)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    for ins in scene.instruments:
        if not ins.on_screen:
            continue
        geo = instrument_geometry(ins)
        for x0, y0, x1, y1, shade in geo["parts"]:
            c0, r1 = to_px(x0, y0, size)
            c1, r0 = to_px(x1, y1, size)
            col = tuple(int(min(255, c * shade)) for c in ins.color) + (255,)
            d.rectangle([float(c0), float(r0), max(float(c0), float(c1) - 1), max(float(r0), float(r1) - 1)],
                        fill=col, outline=tuple(int(c * 0.5) for c in col[:3]) + (255,))
    return img


def render_frames(scene: Scene, sim: Simulation, cfg: WorldConfig) -> np.ndarray:
    """(F, size, size, 3) uint8 RGB frames at cfg.fps; frame k shows the scene at time k / fps."""
    from PIL import Image, ImageDraw

    size = cfg.size
    n = len(sim.times)
    base = Image.fromarray(backdrop(scene, size).astype(np.uint8), "RGB")
    layer = instrument_layer(scene, size) if any(i.on_screen for i in scene.instruments) else None
    vehicles = [(v, vehicle_sprite(v, size)) for v in scene.vehicles if v.on_screen and v.id in sim.vehicles]
    if not vehicles and layer is not None:   # nothing passes behind the instruments: bake them in
        base.paste(layer, (0, 0), layer)
        layer = None
    sprites = {b.id: body_sprites(b, size) for b in scene.bodies}
    rng = np.random.default_rng([scene.seed, 0xFA11])
    n_rain = int(round(scene.rain * 45 * size / 128))
    streak = size / 128 * 7
    n_leaves = int(round(abs(scene.wind) * 30 * size / 128))
    leaves = rng.uniform(0, 1, (n_leaves, 4))
    px = size / 128
    frames = np.empty((n, size, size, 3), np.uint8)
    for f in range(n):
        t = sim.times[f]
        img = base.copy()
        d = ImageDraw.Draw(img)
        for v, spr in vehicles:
            cx = sim.vehicles[v.id][f] * size
            row = road_row(v, size)
            if -spr.width < cx < size + spr.width:
                img.paste(spr, (int(round(cx - spr.width / 2)), int(round(row - spr.height))), spr)
        if layer is not None:
            img.paste(layer, (0, 0), layer)
        for ins in scene.instruments:
            if ins.on_screen:
                _draw_striker(d, ins, sim.strikers[ins.id][f], size)
        for b in scene.bodies:
            x, y, a = sim.bodies[b.id][f]
            imgs, side = sprites[b.id]
            k = int(round(a / (2 * np.pi) * ANGLE_BINS)) % ANGLE_BINS
            c, r = to_px(x, y, size)
            img.paste(imgs[k], (int(round(c - (side - 1) / 2)), int(round(r - (side - 1) / 2))), imgs[k])
        if n_rain:
            xy = rng.uniform(0, 1, (n_rain, 2)) * (size + 2 * streak) - streak
            dx = scene.wind * streak * 0.6
            for x0, y0 in xy:
                d.line([(x0, y0), (x0 + dx, y0 + streak)], fill=(205, 215, 235), width=max(1, int(px)))
        for x0, y0, ph, col in leaves:
            x = ((x0 + scene.wind * 0.25 * t) % 1.0) * size
            y = (y0 * 0.8 + 0.03 * np.sin(6 * t + 7 * ph)) * size
            c = (160, 120, 40) if col < 0.5 else (110, 140, 50)
            d.rectangle([x, y, x + 1.5 * px, y + px], fill=c)
        frames[f] = np.asarray(img)
    return frames


def _draw_striker(d, ins, head, size: int) -> None:
    geo = instrument_geometry(ins)
    hx, hy = head[0], head[1]
    ax, ay = geo["approach"]
    kind = geo["striker"]
    px = size / 128
    c, r = to_px(hx, hy, size)
    if kind == "hand":
        w, h = 0.1 * ins.scale * size / WORLD_W, 0.3 * ins.scale * size / WORLD_W
        d.rectangle([float(c), float(r - h / 2), float(c + w), float(r + h / 2)], fill=ins.color)
        return
    # The shaft leaves the head away from the contact, tilted, ending at a handle.
    c1, r1 = to_px(hx + 0.45 * ax + 0.2 * ay, hy + 0.45 * ay - 0.2 * ax, size)
    shaft = (60, 40, 30) if kind != "finger" else (230, 190, 160)
    d.line([(float(c), float(r)), (float(c1), float(r1))], fill=shaft, width=max(1, int(round(1.5 * px))))
    rad = 2.2 * px if kind in ("mallet", "hammer", "finger") else 1.2 * px
    head_col = {"mallet": (200, 60, 60), "hammer": (90, 90, 100), "finger": (230, 190, 160),
                "stick": (230, 210, 170), "clave": (190, 130, 70)}[kind]
    # The head sits just off the contact point, on the striker's side, so it touches without overlapping.
    cc, rr = float(c) + ax * rad, float(r) - ay * rad
    d.ellipse([cc - rad, rr - rad, cc + rad, rr + rad], fill=head_col)
