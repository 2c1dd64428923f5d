"""Raw data → canonical TSV: real GLUE counts, converters for the datasets not on disk, subsets,
and bad input reported as file:line with nothing half-written left behind."""
import collections
import json
import textwrap

import pytest

from mtdnn_jax.data.canonical import Row, read_canonical, write_canonical
from mtdnn_jax.errors import InputError
from mtdnn_jax.tasks import load_task_defs, parse_task_def
from scripts import prepro
from tests.conftest import REPO

GLUE_DEFS = load_task_defs(REPO / "configs" / "task_defs" / "glue.yml")
SNLI = load_task_defs(REPO / "configs" / "task_defs" / "snli.yml")["snli"]
SCITAIL = load_task_defs(REPO / "configs" / "task_defs" / "scitail.yml")["scitail"]

# Official GLUE sizes (GLUE paper / the data's MANIFEST), every split present on disk.
OFFICIAL_COUNTS = {
    "cola": {"train": 8551, "dev": 1043, "test": 1063},
    "sst": {"train": 67349, "dev": 872, "test": 1821},
    "mrpc": {"train": 3668, "dev": 408, "test": 1725},
    "stsb": {"train": 5749, "dev": 1500, "test": 1379},
    "rte": {"train": 2490, "dev": 277, "test": 3000},
    "wnli": {"train": 635, "dev": 71, "test": 146},
    "qnli": {"dev": 5463, "test": 5463},
    "ax": {"test": 1104},
}


def run_prepro(*args):
  return prepro.main([str(a) for a in args])


@pytest.fixture(scope="module")
def glue_canonical(shared_data, tmp_path_factory):
  out = tmp_path_factory.mktemp("glue")
  assert run_prepro("--task_def", REPO / "configs/task_defs/glue.yml",
                    "--raw_dir", shared_data / "glue", "--output_dir", out) == 0
  return out


def read(out, task, split):
  return read_canonical(out / f"{task}_{split}.tsv", GLUE_DEFS[task])


@pytest.mark.parametrize("task, split, count", [
    (task, split, count) for task, splits in OFFICIAL_COUNTS.items()
    for split, count in splits.items()])
def test_glue_row_counts_are_official(glue_canonical, task, split, count):
  rows = read(glue_canonical, task, split)  # reading back also re-checks every row
  assert len(rows) == count
  if "test" in split:
    assert {row.label for row in rows} == {GLUE_DEFS[task].dummy_label()}
    assert [row.uid for row in rows] == [str(i) for i in range(count)]  # GLUE's index column


def test_glue_splits_not_on_disk_are_skipped(glue_canonical):
  written = {p.name for p in glue_canonical.glob("*.tsv")}
  assert "qqp_train.tsv" not in written and "mnli_train.tsv" not in written
  assert "qnli_train.tsv" not in written
  assert not list(glue_canonical.glob(".*"))  # no temporary files left over


def test_glue_labels_are_mapped_as_defined(glue_canonical):
  def label_counts(task, split):
    task_def = GLUE_DEFS[task]
    return collections.Counter(task_def.encode_label(r.label)
                               for r in read(glue_canonical, task, split))

  # Class balances published with the data (MANIFEST.tsv).
  assert label_counts("sst", "train") == {1: 37569, 0: 29780}
  assert label_counts("mrpc", "dev") == {1: 279, 0: 129}
  assert label_counts("qnli", "dev") == {1: 2702, 0: 2761}  # entailment is id 1
  assert label_counts("rte", "train") == {1: 1249, 0: 1241}
  assert label_counts("wnli", "train") == {0: 323, 1: 312}
  assert label_counts("wnli", "dev") == {0: 40, 1: 31}
  stsb = read(glue_canonical, "stsb", "train")
  # The first row of STS-B/train.tsv, read by eye: score is the last column, texts 8 and 9.
  assert stsb[0] == Row("0", "5.000", ("A plane is taking off.", "An air plane is taking off."))
  assert all(0 <= GLUE_DEFS["stsb"].encode_label(r.label) <= 5 for r in stsb)


def test_glue_quirks(glue_canonical, shared_data):
  mrpc = read(glue_canonical, "mrpc", "dev")  # its header starts with a byte-order mark
  assert mrpc[0].label == "1" and mrpc[0].texts[0].startswith("He said the foodservice pie")
  cola = read(glue_canonical, "cola", "dev")  # no header, no trailing newline
  last_raw = (shared_data / "glue/CoLA/dev.tsv").read_text(encoding="utf-8").split("\n")[-1]
  assert cola[-1].texts == (last_raw.split("\t")[3],)
  sst = read(glue_canonical, "sst", "train")
  assert sst[0].texts == ("hide new secretions from the parental units",)  # trailing space gone
  # Quotes are literal in GLUE: the MRPC row that opens with '"' keeps it.
  assert mrpc[0].texts[1].startswith('" The foodservice pie business')


def test_qnli_ranking_groups_candidates_by_question(glue_canonical):
  rows = read_canonical(glue_canonical / "qnlir_dev.tsv", GLUE_DEFS["qnlir"])
  qnli = read(glue_canonical, "qnli", "dev")
  by_index = {r.uid: r for r in qnli}
  # QNLI dev: 1361 questions with two sentences and one with three, each with one entailment.
  assert len(rows) == 1362
  assert sum(len(r.candidate_uids) for r in rows) == 2 * 1361 + 3
  for row in rows:
    assert row.label.count("entailment") == 1
    for uid, sentence, label in zip(row.candidate_uids, row.texts[1:], row.label):
      assert by_index[uid].texts == (row.texts[0], sentence) and by_index[uid].label == label


def write_lines(path, lines, newline="\n"):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(newline.join(lines) + newline, encoding="utf-8")


def test_mnli_qqp_qnli_converters_on_glue_format_files(tmp_path):
  raw, out = tmp_path / "raw", tmp_path / "out"
  mnli_cols = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
               "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
               "sentence2"]
  parses = ["( x )", "( y )", "(ROOT x)", "(ROOT y)"]
  write_lines(raw / "MNLI/train.tsv", ["\t".join(mnli_cols + ["label1", "gold_label"]),
                                       "\t".join(["0", "31193", "31193n", "government", *parses,
                                                  "Conceptually cream skimming has two dimensions.",
                                                  "Product and geography are what make it work.",
                                                  "neutral", "neutral"])])
  write_lines(raw / "MNLI/dev_matched.tsv", [
      "\t".join(mnli_cols + [f"label{i}" for i in range(1, 6)] + ["gold_label"]),
      "\t".join(["0", "63735", "63735n", "slate", *parses, "The new rights are nice enough",
                 "Everyone really likes the newest benefits", "neutral", "entailment", "neutral",
                 "neutral", "neutral", "neutral"])])
  write_lines(raw / "MNLI/test_matched.tsv", [
      "\t".join(mnli_cols),
      "\t".join(["0", "31", "31e", "fiction", *parses, "Premise.", "Hypothesis."])])
  write_lines(raw / "QQP/train.tsv", [
      "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
      "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of prepration is enough?\t0",
      "402555\t536040\t536041\tHow do I control my horny emotions?",  # the release's broken rows
      "201841\t303951\t174364\tWhat can one do after MBBS?\tWhat do i do after my MBBS ?\t1",
      "363362\t493340\t493341\t\tMy Chinese name is Haichao Yu.\t0"])
  write_lines(raw / "QQP/test.tsv", ["id\tquestion1\tquestion2",
                                     "0\tWhy do rockets look white?\tWhy are rockets white?"])
  write_lines(raw / "QNLI/train.tsv", [
      "index\tquestion\tsentence\tlabel",
      "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it.\tnot_entailment",
      "1\tWhen did the third Digimon series begin?\tIt began in 2001.\tentailment"])
  assert run_prepro("--task_def", REPO / "configs/task_defs/glue.yml", "--raw_dir", raw,
                    "--output_dir", out, "--tasks", "mnli", "qqp", "qnli", "qnlir") == 0
  mnli = GLUE_DEFS["mnli"]
  assert read_canonical(out / "mnli_train.tsv", mnli) == [
      Row("0", "neutral", ("Conceptually cream skimming has two dimensions.",
                           "Product and geography are what make it work."))]
  assert read_canonical(out / "mnli_matched_dev.tsv", mnli)[0].label == "neutral"  # gold, not label1
  assert read_canonical(out / "mnli_matched_test.tsv", mnli) == [
      Row("0", "contradiction", ("Premise.", "Hypothesis."))]
  qqp = read_canonical(out / "qqp_train.tsv", GLUE_DEFS["qqp"])
  assert [(r.uid, r.label) for r in qqp] == [("133273", "0"), ("201841", "1")]
  assert read_canonical(out / "qqp_test.tsv", GLUE_DEFS["qqp"])[0].label == "0"
  assert len(read_canonical(out / "qnli_train.tsv", GLUE_DEFS["qnli"])) == 2
  assert read_canonical(out / "qnlir_train.tsv", GLUE_DEFS["qnlir"]) == [
      Row("0", ("not_entailment", "entailment"),
          ("When did the third Digimon series begin?", "Unlike the two seasons before it.",
           "It began in 2001."), ("0", "1"))]


def snli_record(pair_id, label, s1, s2):
  return json.dumps({"annotator_labels": [label], "captionID": pair_id[:-1], "gold_label": label,
                     "pairID": pair_id, "sentence1": s1, "sentence1_binary_parse": "( x )",
                     "sentence1_parse": "(ROOT x)", "sentence2": s2,
                     "sentence2_binary_parse": "( y )", "sentence2_parse": "(ROOT y)"})


def test_snli_converter_drops_pairs_without_gold_label(tmp_path, capsys):
  raw, out = tmp_path / "raw", tmp_path / "out"
  for split in ("train", "dev", "test"):
    write_lines(raw / f"snli_1.0/snli_1.0_{split}.jsonl", [
        snli_record("3416050480.jpg#4r1n", "neutral", "A person on a horse jumps.",
                    "A person is training\this horse."),
        snli_record("3416050480.jpg#4r1c", "-", "A person on a horse jumps.", "No consensus."),
        snli_record("3416050480.jpg#4r1e", "entailment", "A person on a horse jumps.",
                    "A person is outdoors.")])
  assert run_prepro("--task_def", REPO / "configs/task_defs/snli.yml", "--raw_dir", raw,
                    "--output_dir", out) == 0
  assert "skipped 1 pair without a gold label (-)" in capsys.readouterr().out
  for split in ("train", "dev", "test"):  # SNLI's test split is labelled
    rows = read_canonical(out / f"snli_{split}.tsv", SNLI)
    assert rows == [Row("3416050480.jpg#4r1n", "neutral", ("A person on a horse jumps.",
                                                          "A person is training his horse.")),
                    Row("3416050480.jpg#4r1e", "entailment", ("A person on a horse jumps.",
                                                             "A person is outdoors."))]


def test_scitail_converter(tmp_path):
  raw, out = tmp_path / "raw", tmp_path / "out"
  for split in ("train", "dev", "test"):
    write_lines(raw / f"SciTailV1.1/tsv_format/scitail_1.0_{split}.tsv", [
        "Pluto rotates once on its axis every 6.39 Earth days.\tEarth rotates on its axis once "
        "times in one day.\tneutral",
        "It is a form of energy.\tLight is a form of energy.\tentails"])
  assert run_prepro("--task_def", REPO / "configs/task_defs/scitail.yml", "--raw_dir", raw,
                    "--output_dir", out) == 0
  rows = read_canonical(out / "scitail_test.tsv", SCITAIL)
  assert [(r.uid, SCITAIL.encode_label(r.label)) for r in rows] == [("0", 0), ("1", 1)]
  assert rows[1].texts == ("It is a form of energy.", "Light is a form of energy.")


def test_train_subsets_are_deterministic_nested_and_sized(tmp_path, glue_canonical):
  def subsets(seed, out):
    assert run_prepro("--task_def", REPO / "configs/task_defs/glue.yml", "--raw_dir",
                      glue_canonical.parent, "--output_dir", out, "--tasks", "ax") == 0
    write_canonical(out / "rte_train.tsv", read(glue_canonical, "rte", "train"),
                    GLUE_DEFS["rte"].data_format)
    from mtdnn_jax.data.raw import write_train_subsets
    return write_train_subsets(GLUE_DEFS["rte"], out, [0.001, 0.01, 0.1, 1.0], seed)

  counts = subsets(13, tmp_path / "a")
  # round(2490 × fraction), at least one row.
  assert counts == {"train_0.1pct": 2, "train_1pct": 25, "train_10pct": 249, "train_100pct": 2490}
  subsets(13, tmp_path / "b")
  subsets(14, tmp_path / "c")
  uids = {}
  for run in "abc":
    uids[run] = {split: [r.uid for r in read_canonical(tmp_path / run / f"rte_{split}.tsv",
                                                       GLUE_DEFS["rte"])] for split in counts}
  assert uids["a"] == uids["b"] and uids["a"] != uids["c"]
  small, medium, large = (set(uids["a"][s]) for s in ("train_1pct", "train_10pct", "train_100pct"))
  assert small < medium < large
  assert uids["a"]["train_10pct"] == sorted(uids["a"]["train_10pct"], key=int)  # train's order


RTE_HEADER = "index\tsentence1\tsentence2\tlabel"


@pytest.mark.parametrize("task, file, lines, where, problem", [
    ("rte", "RTE/train.tsv", [RTE_HEADER, "0\tA.\tB.\tentailment", "1\tA.\tnot_entailment"],
     "train.tsv:3", "expected 4 tab-separated fields (index, sentence1, sentence2, label), found 3"),
    ("rte", "RTE/train.tsv", [RTE_HEADER, "0\tA.\tB.\tmaybe"],
     "train.tsv:2", "unknown label 'maybe'"),
    ("rte", "RTE/train.tsv", [RTE_HEADER, "0\tA.\t \tentailment"],
     "train.tsv:2", "empty text"),
    ("rte", "RTE/train.tsv", ["0\tA.\tB.\tentailment"],
     "train.tsv:1", "the header lacks the column(s)"),
    ("cola", "CoLA/train.tsv", ["sentence_source\tlabel\tlabel_notes\tsentence",
                                "gj04\t1\t\tThe sailors rode the breeze."],
     "train.tsv:1", "a header row where none belongs"),
    ("cola", "CoLA/train.tsv", ["gj04\t2\t\tThe sailors rode the breeze."],
     "train.tsv:1", "label 2 is outside [0, 2)"),
    ("stsb", "STS-B/train.tsv", ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t"
                                 "sentence1\tsentence2\tscore",
                                 "0\tmain\tMSRvid\t2012\t0001\tnone\tnone\tA.\tB.\tfive"],
     "train.tsv:2", "label 'five' is not a number"),
])
def test_bad_raw_input_fails_with_file_line(tmp_path, capsys, task, file, lines, where, problem):
  raw, out = tmp_path / "raw", tmp_path / "out"
  write_lines(raw / file, lines)
  assert run_prepro("--task_def", REPO / "configs/task_defs/glue.yml", "--raw_dir", raw,
                    "--output_dir", out, "--tasks", task) == 1
  error = capsys.readouterr().err
  assert f"{raw / file.rsplit('/', 1)[0]}/{where}: " in error and problem in error
  assert not list(out.glob(f"{task}_train*")) and not list(out.glob(".*"))  # nothing half-written


def test_bytes_that_are_not_utf8_fail_with_line(tmp_path, capsys):
  raw, out = tmp_path / "raw", tmp_path / "out"
  path = raw / "RTE/train.tsv"
  path.parent.mkdir(parents=True)
  path.write_bytes(f"{RTE_HEADER}\n0\tA.\tB.\tentailment\n1\tCaf\xe9.\tB.\tentailment\n"
                   .encode("latin-1"))
  assert run_prepro("--task_def", REPO / "configs/task_defs/glue.yml", "--raw_dir", raw,
                    "--output_dir", out, "--tasks", "rte") == 1
  assert f"{path}:3: not UTF-8 text (byte b'\\xe9' at column 6)" in capsys.readouterr().err
  assert not out.exists() or not any(out.iterdir())


def test_snli_bad_json_fails_with_line(tmp_path, capsys):
  raw, out = tmp_path / "raw", tmp_path / "out"
  write_lines(raw / "snli_1.0/snli_1.0_train.jsonl",
              [snli_record("1n", "neutral", "A.", "B."), '{"gold_label": "neutral", '])
  assert run_prepro("--task_def", REPO / "configs/task_defs/snli.yml", "--raw_dir", raw,
                    "--output_dir", out) == 1
  assert "snli_1.0_train.jsonl:2: not a JSON object" in capsys.readouterr().err
  assert not (out / "snli_train.tsv").exists()


NER = parse_task_def("ner", {"task_type": "SeqenceLabeling", "data_format": "Seqence",
                             "labels": ["O", "B-PER", "I-PER"]})
PAIR = GLUE_DEFS["rte"]


@pytest.mark.parametrize("task, lines, where, problem", [
    (NER, ["0\t['B-PER', 'O']\t['John', 'runs']", "1\t['B-PER', 'O']\t['John', 'runs', '.']"],
     2, "2 labels for 3 words"),
    (NER, ["0\t['B-PER', 'O']\t__import__('os')"], 1, "not a Python list literal"),
    (NER, ["0\t['B-PER']\t[1]"], 1, "not a list of strings"),
    (PAIR, ["uid\tlabel\tpremise\thypothesis", "0\tentailment\tA.\tB."], 1,
     "a header row where none belongs"),
    (PAIR, ["0\tentailment\tA."], 1, "expected 4 tab-separated fields"),
    (PAIR, ["0\tentailment\tA.\tB.", "1\tneutral\tA.\tB."], 2, "unknown label 'neutral'"),
    (PAIR, ["0\tentailment\t\tB."], 1, "empty text"),
])
def test_bad_canonical_rows_fail_with_file_line(tmp_path, task, lines, where, problem):
  path = tmp_path / "task_split.tsv"
  write_lines(path, lines)
  with pytest.raises(InputError) as error:
    read_canonical(path, task)
  assert str(error.value).startswith(f"{path}:{where}: ") and problem in str(error.value)


def test_canonical_round_trip_of_every_format(tmp_path):
  rank = GLUE_DEFS["qnlir"]
  cases = [
      (GLUE_DEFS["cola"], [Row("0", "1", ('He said "hi".',))]),
      (PAIR, [Row("a", "entailment", ("A.", "B."))]),
      (rank, [Row("7", ("entailment", "not_entailment"), ("Q?", "A.", "B."), ("3", "4"))]),
      (NER, [Row("0", ("B-PER", "O"), ("O'Neil", "runs"))]),
  ]
  for task, rows in cases:
    path = tmp_path / f"{task.name}_x.tsv"
    assert write_canonical(path, rows, task.data_format) == len(rows)
    assert read_canonical(path, task) == rows
  assert (tmp_path / "ner_x.tsv").read_text() == "0\t['B-PER', 'O']\t[\"O'Neil\", 'runs']\n"
  assert (tmp_path / "qnlir_x.tsv").read_text() == "7\t3,4\tentailment,not_entailment\tQ?\tA.\tB.\n"


def test_unknown_task_is_refused(tmp_path, capsys):
  path = tmp_path / "defs.yml"
  path.write_text(textwrap.dedent("""\
      boolq:
        task_type: Classification
        data_format: PremiseAndOneHypothesis
        n_class: 2
      """))
  assert run_prepro("--task_def", path, "--raw_dir", tmp_path, "--output_dir", tmp_path / "o") == 1
  assert "no raw layout is known for task 'boolq'" in capsys.readouterr().err
