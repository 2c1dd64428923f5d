"""Data: raw datasets → canonical TSV → tokenized feature cache → bucketed multi-task batches.

canonical.py    the reference's canonical TSV rows: reading, checking, writing
raw.py          raw layouts (GLUE, SNLI, SciTail, CoNLL) → canonical rows; train subsets
conll.py        CoNLL-2003 NER files (IOB1) → canonical Seqence rows (BIO)
squad.py        SQuAD's official JSON → question-first windows (MRC has no canonical TSV)
tfds_source.py  TensorFlow Datasets → the same canonical rows
features.py     tokenization and the on-disk feature cache
batching.py     length buckets and fixed-shape batches
sampler.py      the multi-task training schedule, resumable, per host
"""
