"""Data: raw datasets → canonical TSV → tokenized feature cache → bucketed multi-task batches.

canonical.py    the reference's canonical TSV rows: reading, checking, writing
raw.py          raw layouts (GLUE, SNLI, SciTail) → canonical rows; train subsets
tfds_source.py  TensorFlow Datasets → the same canonical rows
features.py     tokenization and the on-disk feature cache
batching.py     length buckets and fixed-shape batches
sampler.py      the multi-task training schedule, resumable, per host
"""
