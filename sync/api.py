"""The sync wire: push, pull, checkpoints, devices, rejections, replay."""

from __future__ import annotations

from domain.api import Router

router = Router("sync")
