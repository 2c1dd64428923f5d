#!/usr/bin/env python
"""How data/demo/*.tsv were made from GLUE's STS-B (run once; kept to document the rule).

Only the rows whose text is under CC BY-SA are taken (see README.md here): STS-B `filename`
"images" (PASCAL VOC-2008 captions) and "track5.en-en" (an SNLI subset). Two tasks share them:
  sts         the similarity score, 0-5 (regression)
  paraphrase  "similar" if the score is at least 3.0, else "different" (classification)

  python data/demo/make_demo_data.py ../shared/data/glue/STS-B data/demo
"""
import csv
import sys
from pathlib import Path

FREE_TEXT_SOURCES = {"images", "track5.en-en"}
SIMILAR_FROM = 3.0


def main(stsb_dir: str, out_dir: str) -> None:
  out = Path(out_dir)
  for split in ("train", "dev"):
    with open(Path(stsb_dir) / f"{split}.tsv", encoding="utf-8", newline="") as f:
      rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
              if r["filename"] in FREE_TEXT_SOURCES]
    with open(out / f"sts_{split}.tsv", "w", encoding="utf-8", newline="") as sts, \
         open(out / f"paraphrase_{split}.tsv", "w", encoding="utf-8", newline="") as para:
      for r in rows:
        uid, a, b, score = r["index"], r["sentence1"], r["sentence2"], float(r["score"])
        sts.write(f"{uid}\t{score:.3f}\t{a}\t{b}\n")
        label = "similar" if score >= SIMILAR_FROM else "different"
        para.write(f"{uid}\t{label}\t{a}\t{b}\n")
    print(f"{split}: {len(rows)} rows")


if __name__ == "__main__":
  main(*sys.argv[1:])
