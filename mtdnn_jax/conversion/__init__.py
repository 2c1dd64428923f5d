"""Reading and writing foreign BERT checkpoints (Google TF, Hugging Face / PyTorch, reference
MT-DNN). The command-line front ends live in the top-level `convert/` folder."""
