"""The README's Python examples run as written (in order, sharing one namespace)."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace = {}
    for block in blocks:
        exec(
            compile(block.replace("/tmp/fedjax_lab_readme_run", str(tmp_path)), "README", "exec"),
            namespace,
        )
    assert namespace["state"].params["head"]["kernel"].shape == (8, 200, 10)
    assert 0.0 <= namespace["summary"]["test_accuracy"] <= 1.0
    assert abs(namespace["ring"].spectral_gap() - 0.0013157) < 1e-5
    assert abs(namespace["values"]["u"] - 7.5).max() < 1e-3  # push-sum's exact average
    losses = namespace["zo_result"].losses
    assert float(losses[-1]) < float(losses[0])  # zeroth-order training through a black box
