#!/usr/bin/env python
"""Convert a Google TF v1 BERT checkpoint folder into an mtdnn-jax model directory.

  python convert/tf_checkpoint.py --tf_checkpoint_root chinese_L-12_H-768_A-12 --output models/zh

The folder holds bert_config.json, vocab.txt and bert_model.ckpt.{index,data-*} (or pass a
checkpoint prefix such as DIR/model.ckpt-1000). Optimizer slots and pre-training heads are
skipped and listed. Needs TensorFlow (pip install 'mtdnn_jax[tf]').
"""
from mtdnn_jax import cli


def main():
  p = cli.parser(__doc__)
  p.add_argument("--tf_checkpoint_root", required=True,
                 help="checkpoint folder (or checkpoint prefix)")
  cli.add_output_args(p)
  p.add_argument("--config", help="bert_config.json, if not in the checkpoint folder")
  cli.add_do_lower_case_arg(p, "guessed from the folder name: 'cased_…' keeps case, anything "
                            "else lower-cases")
  args = p.parse_args()

  from mtdnn_jax.conversion.tf_bert import convert_tf_checkpoint
  report = convert_tf_checkpoint(args.tf_checkpoint_root, args.output, config_file=args.config,
                                 do_lower_case=args.do_lower_case, overwrite=args.overwrite)
  print(report.summary())


if __name__ == "__main__":
  cli.run(main)
