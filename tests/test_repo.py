"""The promises README.md makes about itself and CI."""
import re

from tests.helpers import REPO


def readme_commands() -> list[str]:
  readme = (REPO / "README.md").read_text(encoding="utf-8")
  first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
  return [line for line in first_block.splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands():
  commands = readme_commands()
  assert len(commands) == 2
  assert "pytest" not in commands[0] and "pytest" in commands[1]


def test_ci_runs_readmes_test_command_verbatim():
  ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
  assert readme_commands()[1] in ci_lines


def test_main_job_is_the_demo_training():
  main_job = readme_commands()[0]
  config = re.search(r"--config (\S+)", main_job).group(1)
  assert config == "configs/demo.py" and (REPO / config).is_file()
