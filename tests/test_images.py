"""fmq.images: grid layout and pixel values with known answers."""

from __future__ import annotations

import numpy as np
import torch

from fmq.images import make_grid, save_grid


def test_grid_layout_values_and_gaps():
    images = torch.full((5, 1, 4, 4), -1.0)  # black
    images[4] = 1.0  # the last one white
    g = make_grid(images, pad=2)
    # 5 images -> 3 columns, 2 rows; each cell 4 px plus 2 px padding, plus the outer padding
    assert g.shape == (2 * 6 + 2, 3 * 6 + 2, 3) and g.dtype == np.uint8
    assert (g[2:6, 2:6] == 0).all()  # first image, black, grey -> RGB
    assert (g[8:12, 2:6] == 0).all() and (g[8:12, 8:12] == 255).all()  # 4th black (row 1, col 0), 5th white
    assert (g[0:2] == 255).all() and (g[:, 6:8] == 255).all()  # padding is white
    assert (g[8:12, 14:18] == 255).all()  # the empty sixth cell stays white
    assert make_grid(images, nrow=5, pad=0).shape == (4, 20, 3)
    big = make_grid(images, pad=2, scale=3)
    assert big.shape == (3 * 14, 3 * 20, 3) and (big[::3, ::3] == g).all()


def test_rgb_values_map_from_minus_one_to_one_onto_0_255(tmp_path):
    images = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 4).expand(1, 3, 1, 4)
    g = make_grid(images, pad=0)
    assert g[0, :, 0].tolist() == [0, 128, 255, 255]  # 0 -> 127.5 rounds to 128; outside [-1, 1] clipped
    from PIL import Image

    path = save_grid(torch.zeros(4, 3, 2, 2), tmp_path / "g" / "grid.png", scale=2)
    assert Image.open(path).size == (20, 20)  # 2 × 2 cells of 2 px, 2 px padding: 10 px, scaled by 2
