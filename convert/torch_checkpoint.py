#!/usr/bin/env python
"""Convert PyTorch BERT weights into an mtdnn-jax model directory.

  python convert/torch_checkpoint.py --input bert-base-uncased/ --output models/bert-base
  python convert/torch_checkpoint.py --input mt_dnn_base.pt --vocab vocab.txt --output models/mtdnn

--input is a Hugging Face BERT folder (config.json + model.safetensors or pytorch_model.bin,
vocab.txt) or a reference MT-DNN checkpoint (.pt with 'state' and 'config'); the latter's task
heads (scoring_list.*) are kept in the output's heads.safetensors. Pickles are only read with
torch.load(weights_only=True).
"""
from mtdnn_jax import cli


def main():
  p = cli.parser(__doc__)
  p.add_argument("--input", required=True, help="HF BERT folder or reference MT-DNN .pt")
  cli.add_output_args(p)
  p.add_argument("--vocab", help="vocab.txt (required for a reference .pt)")
  p.add_argument("--config", help="bert_config.json overriding the checkpoint's own")
  cli.add_do_lower_case_arg(p, "tokenizer_config.json, else guessed from the name")
  args = p.parse_args()

  from mtdnn_jax.conversion.torch_bert import convert_torch_checkpoint
  report = convert_torch_checkpoint(args.input, args.output, vocab=args.vocab,
                                    config_file=args.config, do_lower_case=args.do_lower_case,
                                    overwrite=args.overwrite)
  print(report.summary())


if __name__ == "__main__":
  cli.run(main)
