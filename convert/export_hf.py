#!/usr/bin/env python
"""Export an mtdnn-jax model directory as a Hugging Face BERT folder.

  python convert/export_hf.py --model_dir models/zh --output hf/zh

The result loads with transformers.BertModel.from_pretrained(...) and BertTokenizer.
"""
from mtdnn_jax import cli


def main():
  p = cli.parser(__doc__)
  p.add_argument("--model_dir", required=True, help="model directory (or packaged:<name>)")
  cli.add_output_args(p, "Hugging Face folder to write")
  args = p.parse_args()

  from mtdnn_jax.conversion.hf_export import export_hf
  from mtdnn_jax.pretrained import resolve_model_dir
  out = export_hf(resolve_model_dir(args.model_dir), args.output, overwrite=args.overwrite)
  print(f"wrote {out} (transformers.BertModel.from_pretrained({str(out)!r}))")


if __name__ == "__main__":
  cli.run(main)
