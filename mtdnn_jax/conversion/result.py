"""What a conversion produces: the model directory, and a report of what it took and skipped."""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, Callable, Iterable


@dataclasses.dataclass
class ConversionReport:
  source: str
  output: str
  num_params: int = 0
  num_values: int = 0
  skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> reason
  notes: list[str] = dataclasses.field(default_factory=list)

  def skipped_by_reason(self) -> dict[str, list[str]]:
    groups = defaultdict(list)
    for name, reason in sorted(self.skipped.items()):
      groups[reason].append(name)
    return dict(groups)

  def summary(self) -> str:
    lines = [f"converted {self.source} -> {self.output}: {self.num_params} parameter arrays, "
             f"{self.num_values:,} values"]
    for reason, names in self.skipped_by_reason().items():
      examples = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
      lines.append(f"  skipped {len(names)} {reason}: {examples}")
    lines += [f"  note: {note}" for note in self.notes]
    return "\n".join(lines)

  def provenance(self, fmt: str) -> dict:
    return {"source": self.source, "source_format": fmt,
            "skipped": self.skipped_by_reason(), "notes": self.notes}


def write_converted(*, source, output, config, config_name: str, fmt: str,
                    names: Iterable[str], read: Callable[[str], Any],
                    skip_reason: Callable[[str], str | None], vocab_path, do_lower_case,
                    name_for_guess: str, source_format: str,
                    skipped_extra: dict[str, str] | None = None, heads=None, heads_meta=None,
                    overwrite: bool = False) -> ConversionReport:
  """What every converter does once it can list and read the foreign tensors: check the
  vocabulary, account for each tensor it will not use, import, and write the model directory.

  `skip_reason(name)` says why an unused tensor may be dropped, or None when it may not (then
  the conversion fails: a tensor the encoder has no place for means the config is wrong).
  """
  from mtdnn_jax.conversion.layout import foreign_names, import_params
  from mtdnn_jax.errors import InputError
  from mtdnn_jax.model_dir import save_model_dir, unflatten_params
  from mtdnn_jax.tokenization import TokenizerSettings, guess_do_lower_case, read_vocab

  vocab = read_vocab(vocab_path)
  if len(vocab) != config.vocab_size:
    raise InputError(vocab_path, f"vocabulary has {len(vocab)} tokens but {config_name} says "
                     f"vocab_size={config.vocab_size}")
  report = ConversionReport(str(source), str(output))
  for name in sorted(set(names) - set(foreign_names(config, fmt))):
    reason = skip_reason(name)
    if reason is None:
      raise InputError(source, f"{name!r} is not part of a BERT encoder with "
                       f"{config.num_hidden_layers} layers as {config_name} describes")
    report.skipped[name] = reason
  report.skipped.update(skipped_extra or {})
  flat = import_params(read, config, fmt, source)
  report.num_params = len(flat)
  report.num_values = int(sum(v.size for v in flat.values()))
  if heads:
    report.notes.append(f"kept {len(heads)} task-head tensors ({', '.join(sorted(heads)[:4])}"
                        f"{', ...' if len(heads) > 4 else ''}) in heads.safetensors")
  if do_lower_case is None:
    do_lower_case = guess_do_lower_case(name_for_guess)
    report.notes.append(f"do_lower_case={do_lower_case}, guessed from the name "
                        f"{name_for_guess!r} (set it with --do_lower_case/--no-do_lower_case)")
  save_model_dir(output, config=config, params=unflatten_params(flat), vocab=vocab,
                 tokenizer_settings=TokenizerSettings(do_lower_case=bool(do_lower_case)),
                 provenance=report.provenance(source_format), heads=heads or None,
                 heads_meta=heads_meta, overwrite=overwrite)
  return report
