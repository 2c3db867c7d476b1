"""Dataset building for distillation (issue 17, item 1): ``flowstudio data build`` is not assembled yet.

Its tested building blocks so far: :mod:`flowstudio.data.filters` (blurry, static, black and frozen
clips) and :mod:`flowstudio.data.dedup` (near duplicates by perceptual hashes). Still to come: the
probe and shot cuts (shared with ``flowstudio avatar preprocess``), normalisation, captions, the
editing engine's pairs with the benchmark's checks, the Parquet manifest and datasheet, and the
resumable Ray run.
"""
