"""Built-in test sets: ``shapeworld-v1`` (generated, with ground truth) and the ``ecommerce`` template.

``shapeworld-v1`` is a pure function of its seed: case ``i`` draws a random ShapeWorld scene and one
edit from ``numpy.random.default_rng([seed, i])``; edit types cycle through product, color, material,
background and style, so 200 cases hold 40 of each. Every case has the source clip, the exact
ground-truth target (the same scene re-rendered with the one attribute changed), both object masks,
the target's first frame and the source/target prompts (same template, differing only in the
edited words). Files are lossless ``.npz``; hashes are recorded in the manifest.

A folder already holding the same set (same generator settings, files intact) is reused, so
``bench run --testset shapeworld-v1`` builds it once into the cache folder
(``$FLOWSTUDIO_BENCH_CACHE``, default ``~/.cache/flowstudio/bench``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.bench.io import save_frames, save_mask, sha256_file
from flowstudio.bench.manifest import (
    MANIFEST_NAME,
    ManifestError,
    TestSet,
    load_testset,
    read_manifest,
    write_manifest,
)
from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

SHAPEWORLD_VERSION = 1
SHAPEWORLD_EDITS: tuple[str, ...] = ("product", "color", "material", "background", "style")
BUILTIN_SETS: tuple[str, ...] = ("shapeworld-v1", "ecommerce")
CACHE_ENV = "FLOWSTUDIO_BENCH_CACHE"


def cache_dir() -> Path:
    """Folder of generated built-in sets: ``$FLOWSTUDIO_BENCH_CACHE`` or ``~/.cache/flowstudio/bench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "flowstudio" / "bench")


def make_shapeworld(
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    num_cases: int = 200,
    num_frames: int = 17,
    height: int = 128,
    width: int = 128,
    progress: bool = False,
) -> TestSet:
    """Generate (or reuse) ``shapeworld-v1`` in ``out`` and return the validated set.

    Args:
        out: folder; gets ``manifest.json`` and ``cases/<id>/{source,mask,target,target_mask}.npz``
            plus ``first_frame.png``.
        seed: the set's seed; case ``i`` uses ``default_rng([seed, i])``.
        num_cases: number of cases (>= 5 for every edit type; 200 is the published set).
        num_frames, height, width: clip shape (``4k+1`` frames, multiples of 32).
        progress: show a tqdm bar.
    """
    from PIL import Image
    from tqdm import tqdm

    from flowstudio.worlds.edits import edit_prompt_pair, edit_spec
    from flowstudio.worlds.shapes import check_clip_size, random_spec, render_scene

    if isinstance(num_cases, bool) or not isinstance(num_cases, int) or num_cases < 1:
        raise InputError(f"num_cases must be a positive integer, got {num_cases!r}")
    check_clip_size(num_frames, height, width)
    out = Path(out)
    generator = {
        "name": "shapeworld-v1",
        "version": SHAPEWORLD_VERSION,
        "seed": int(seed),
        "num_cases": num_cases,
        "num_frames": num_frames,
        "height": height,
        "width": width,
    }
    manifest = out / MANIFEST_NAME
    if manifest.is_file():
        try:
            if read_manifest(manifest).get("generator") == generator:
                testset = load_testset(manifest, check_files=False)
                logger.info("reusing %s (%d cases, seed %d)", manifest, len(testset), seed)
                return testset
        except ManifestError as err:
            logger.warning("regenerating %s: %s", out, err)
    cases: list[dict[str, Any]] = []
    for i in tqdm(range(num_cases), desc="shapeworld-v1", disable=not progress, unit="case"):
        rng = np.random.default_rng([int(seed), i])
        edit_type = SHAPEWORLD_EDITS[i % len(SHAPEWORLD_EDITS)]
        spec = random_spec(rng)
        target_spec = edit_spec(spec, edit_type, rng)
        source_prompt, target_prompt = edit_prompt_pair(spec, target_spec, rng)
        case_id = f"sw{seed}-{i:04d}-{edit_type}"
        folder = out / "cases" / case_id
        src = render_scene(spec, num_frames, height, width)
        tgt = render_scene(target_spec, num_frames, height, width)
        files = {
            "source": save_frames(folder / "source.npz", src.frames),
            "mask": save_mask(folder / "mask.npz", src.mask),
            "target": save_frames(folder / "target.npz", tgt.frames),
            "target_mask": save_mask(folder / "target_mask.npz", tgt.mask),
        }
        first = folder / "first_frame.png"
        Image.fromarray(tgt.frames[0]).save(first)
        files["target_first_frame"] = first
        field = {"product": "shape"}.get(edit_type, edit_type)
        cases.append(
            {
                "id": case_id,
                "edit_type": edit_type,
                **{name: file.relative_to(out).as_posix() for name, file in files.items()},
                "source_prompt": source_prompt,
                "target_prompt": target_prompt,
                "instruction": f"change the {field} to {getattr(target_spec, field)}",
                "tags": [
                    f"shape:{spec.shape}",
                    f"motion:{spec.motion}",
                    f"style:{spec.style}",
                    f"background:{spec.background}",
                ],
                "attributes": {
                    "world": "shapeworld",
                    "field": field,
                    "source": spec.to_dict(),
                    "target": target_spec.to_dict(),
                },
                "sha256": {name: sha256_file(file) for name, file in files.items()},
            }
        )
    data = {
        "format": "flowstudio-bench-manifest",
        "version": 1,
        "name": "shapeworld-v1",
        "description": "ShapeWorld product clips with exact ground-truth edits (product, color, material, "
        "background, style) and object masks; generated by `flowstudio bench make-set`.",
        "license": "Apache-2.0",
        "generator": generator,
        "fps": 16.0,
        "cases": cases,
    }
    write_manifest(manifest, data)
    logger.info("wrote %s (%d cases)", manifest, num_cases)
    return load_testset(manifest, check_files=False)


ECOMMERCE_TEMPLATE: dict[str, Any] = {
    "format": "flowstudio-bench-manifest",
    "version": 1,
    "name": "ecommerce",
    "description": "Real product clips. Replace the example cases; see docs/annotating_ecommerce.md.",
    "license": "fill in: who owns the clips and under which terms they may be used",
    "fps": 16.0,
    "cases": [
        {
            "id": "sneaker-001-color",
            "edit_type": "color",
            "source": "clips/sneaker-001.mp4",
            "mask": "masks/sneaker-001.mp4",
            "source_prompt": "a white canvas sneaker turning on a wooden table, studio light",
            "target_prompt": "a red canvas sneaker turning on a wooden table, studio light",
            "instruction": "make the sneaker red",
            "tags": ["footwear", "turntable"],
        },
        {
            "id": "mug-002-background",
            "edit_type": "background",
            "source": "clips/mug-002.mp4",
            "mask": "masks/mug-002.mp4",
            "source_prompt": "a ceramic coffee mug on a kitchen counter, the camera pans right",
            "target_prompt": "a ceramic coffee mug on a marble counter by a window, the camera pans right",
            "tags": ["kitchen", "pan"],
        },
        {
            "id": "bottle-003-product",
            "edit_type": "product",
            "source": "clips/bottle-003.mp4",
            "mask": "masks/bottle-003.mp4",
            "target_first_frame": "first_frames/bottle-003.png",
            "source_prompt": "a green glass perfume bottle on a silk cloth, slow zoom in",
            "target_prompt": "a gold metal perfume bottle on a silk cloth, slow zoom in",
            "tags": ["cosmetics", "zoom"],
        },
    ],
}


def make_ecommerce_template(out: str | os.PathLike[str]) -> Path:
    """Write the ``ecommerce`` manifest template and folders ``clips/``, ``masks/``, ``first_frames/``."""
    out = Path(out)
    manifest = out / MANIFEST_NAME
    if manifest.exists():
        raise InputError(f"{manifest} exists; pick an empty folder for the template")
    for sub in ("clips", "masks", "first_frames"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, ECOMMERCE_TEMPLATE)
    (out / "README.md").write_text(
        "# ecommerce test set (template)\n\nPut source clips in `clips/`, object masks (white object on "
        "black, same frames and size as the clip) in `masks/`, optional wanted first frames in "
        "`first_frames/`, then "
        "edit `manifest.json` and run `flowstudio bench validate manifest.json --rehash`.\n"
        "The annotation guide is docs/annotating_ecommerce.md in the flowstudio repository.\n",
        encoding="utf-8",
    )
    return manifest


def resolve_testset(
    name_or_path: str | os.PathLike[str],
    *,
    seed: int = 0,
    limit: int | None = None,
    edit_types: list[str] | tuple[str, ...] | None = None,
) -> TestSet:
    """A test set by built-in name (``shapeworld-v1``, generated into :func:`cache_dir` once) or path.

    ``edit_types`` keeps the cases of those edit types (a method made for one type, such as a preset,
    runs on its own cases); ``limit`` then keeps the first ``limit`` cases (a quick subset). The
    results record both.

    Raises:
        InputError: an edit type the set does not hold (naming the ones it does), or a limit below 1.
    """
    text = str(name_or_path)
    if text == "shapeworld-v1":
        testset = make_shapeworld(cache_dir() / f"shapeworld-v1-seed{seed}", seed=seed, progress=True)
    elif text == "ecommerce":
        raise InputError(
            "`ecommerce` is a template for your own clips: write it with `flowstudio bench make-set "
            "ecommerce DIR`, fill it in, then pass DIR/manifest.json"
        )
    else:
        testset = load_testset(text)
    return subset(testset, edit_types=edit_types, limit=limit)


def subset(
    testset: TestSet, *, edit_types: list[str] | tuple[str, ...] | None = None, limit: int | None = None
) -> TestSet:
    """The cases of ``edit_types`` (all when empty or ``None``), then the first ``limit`` of them.

    Raises:
        InputError: an edit type the set does not hold, or a limit below 1.
    """
    if edit_types:
        testset = only_edit_types(testset, edit_types)
    if limit is not None:
        if limit < 1:
            raise InputError(f"limit must be a positive number of cases, got {limit}")
        testset = TestSet(
            path=testset.path, name=testset.name, cases=testset.cases[:limit], data=testset.data
        )
    return testset


def only_edit_types(testset: TestSet, edit_types: list[str] | tuple[str, ...]) -> TestSet:
    """``testset`` with only the cases of ``edit_types`` (in the set's order).

    Raises:
        InputError: a type with no case in the set, naming the types it holds.
    """
    held = sorted({case.edit_type for case in testset.cases})
    unknown = sorted(set(edit_types) - set(held))
    if unknown:
        raise InputError(
            f"edit type(s) {', '.join(map(repr, unknown))} not in test set {testset.name!r}; "
            f"it holds: {', '.join(held)}"
        )
    wanted = set(edit_types)
    return TestSet(
        path=testset.path,
        name=testset.name,
        cases=tuple(case for case in testset.cases if case.edit_type in wanted),
        data=testset.data,
    )
