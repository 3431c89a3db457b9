"""``specdiff serve``'s options are checked before any model loads (one line, exit code 2)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from specdiff.cli import app


@pytest.mark.parametrize("args,message", [
    (["--pair", "pocket", "--drafter", "d"], "not both"),
    (["--pair", "nope"], "unknown pair"),
    (["--drafter", "d"], "name both --drafter and --verifier"),
    (["--max-batch-size", "0"], "max_batch_size must be"),
    (["--port", "70000"], "port must be"),
    (["--steps", "0"], "denoising_steps must be >= 1"),
    (["--proposer", "oracle"], "unknown proposer"),
])
def test_bad_options_fail_in_one_line_before_loading(args, message):
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
