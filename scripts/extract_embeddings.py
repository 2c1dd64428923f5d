#!/usr/bin/env python
"""Extract contextual embeddings from an encoder, one JSON object per input line.

  python scripts/extract_embeddings.py --model_dir packaged:all-MiniLM-L6-v2 \
      --finput texts.txt --foutput embeddings.jsonl --layer -1

Each input line is a text, or a pair written `text a ||| text b`. Each output line holds
`line`, `text_a` (and `text_b`), `layer`, `tokens` (WordPiece, with [CLS]/[SEP]), `cls` (the
[CLS] vector) and `token_vectors` (one vector per token) of the chosen layer: 0 is the
embedding output, 1..L the Transformer layers, -1 the last.
"""
from mtdnn_jax import cli


def main():
  parser = cli.parser(__doc__)
  parser.add_argument("--model_dir", required=True, help="model directory, or packaged:<name>")
  parser.add_argument("--finput", required=True, help="UTF-8 text file, one text (pair) a line")
  parser.add_argument("--foutput", required=True, help="JSON-lines file to write")
  parser.add_argument("--layer", type=int, default=-1, help="which hidden states (default -1)")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--max_seq_len", type=int, default=128,
                      help="longer texts are truncated (pairs longest-first)")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                      help="compute dtype")
  args = parser.parse_args()

  import jax.numpy as jnp

  from mtdnn_jax.embeddings import EmbeddingExtractor
  from mtdnn_jax.model_dir import load_model_dir
  from mtdnn_jax.pretrained import resolve_model_dir

  model = load_model_dir(resolve_model_dir(args.model_dir))
  extractor = EmbeddingExtractor(model, layer=args.layer, batch_size=args.batch_size,
                                 max_seq_len=args.max_seq_len, dtype=getattr(jnp, args.dtype))
  count = extractor.extract_file(args.finput, args.foutput)
  print(f"wrote {count} embeddings (layer {extractor.layer}, hidden size "
        f"{model.config.hidden_size}) to {args.foutput}")


if __name__ == "__main__":
  cli.run(main, runs_models=True)
