"""CoNLL-2003 named-entity recognition (sequence labelling, BIO tags, entity-level F1).

  python scripts/prepro.py --task_def configs/task_defs/ner.yml \
      --raw_dir ../shared/data/conll2003 --output_dir data/conll
  python scripts/train.py --config configs/ner.py --workdir runs/ner

The first sub-word of each word carries its tag; sentences longer than max_seq_len are split
into windows and rejoined for scoring. Result with MiniLM-L6 (uncased, 3 epochs): docs/RESULTS.md.
Add the GLUE tasks to `tasks` (and a task_def holding both) to train NER inside an MT-DNN run.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.task_def = "configs/task_defs/ner.yml"
  config.tasks = "conll"
  config.data_dir = "data/conll"
  config.num_epochs = 3
  # A 6-layer encoder learns token tags faster with a larger step than the paper's 5e-5 for
  # BERT-large sentence tasks.
  config.optim.lr = 1e-4
  return config
