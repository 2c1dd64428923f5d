#!/usr/bin/env python
"""Convert PyTorch BERT weights into an mtdnn-jax model directory.

  python convert/torch_checkpoint.py --input bert-base-uncased/ --output models/bert-base
  python convert/torch_checkpoint.py --input mt_dnn_base.pt --vocab vocab.txt --output models/mtdnn

--input is a Hugging Face BERT folder (config.json + model.safetensors or pytorch_model.bin,
vocab.txt) or a reference MT-DNN checkpoint (.pt with 'state' and 'config'); the latter's task
heads (scoring_list.*) are kept in the output's heads.safetensors. Pickles are only read with
torch.load(weights_only=True).
"""
import argparse

from mtdnn_jax.cli import run


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--input", required=True, help="HF BERT folder or reference MT-DNN .pt")
  parser.add_argument("--output", required=True, help="model directory to write")
  parser.add_argument("--vocab", help="vocab.txt (required for a reference .pt)")
  parser.add_argument("--config", help="bert_config.json overriding the checkpoint's own")
  parser.add_argument("--do_lower_case", action=argparse.BooleanOptionalAction, default=None,
                      help="lower-case text (default: tokenizer_config.json, else guessed from "
                      "the name)")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
  args = parser.parse_args()

  from mtdnn_jax.conversion.torch_bert import convert_torch_checkpoint
  report = convert_torch_checkpoint(args.input, args.output, vocab=args.vocab,
                                    config_file=args.config, do_lower_case=args.do_lower_case,
                                    overwrite=args.overwrite)
  print(report.summary())


if __name__ == "__main__":
  run(main)
