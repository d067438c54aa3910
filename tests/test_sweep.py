import json

from fxp.cli import main


def test_sweep_writes_table_plot_and_smallest_widths(tmp_path):
    assert main(["sweep", "--bits", "4,8", "--vary", "prop,update", "--epochs", "3", "--limit-train", "600",
                 "--quiet", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "sweep.json").read_text())
    assert [(r["dimension"], r["bits"]) for r in rec["rows"]] == [("prop", 4), ("prop", 8), ("update", 4), ("update", 8)]
    assert rec["rows"][1]["config"] == {"act_bits": 8, "grad_bits": 8, "update_bits": 12}
    assert rec["rows"][2]["config"] == {"act_bits": 10, "grad_bits": 10, "update_bits": 4}
    md = (tmp_path / "sweep.md").read_text()
    assert "| bits | prop | update |" in md and "|---:|---:|---:|" in md
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    ok = [r for r in rec["rows"] if r["accuracy"] is not None]
    assert all(0 <= r["accuracy"] <= 1 for r in ok)
    # the rows that should train do (chance on digits is 10 %; these reach about 74 % in 3 short epochs)
    assert rec["float_accuracy"] > 0.5
    for r in rec["rows"]:
        if r["bits"] == 8:
            assert r["status"] == "ok" and r["accuracy"] is not None and r["accuracy"] > 0.5, r
    for dim, b in rec["smallest_within_tolerance"].items():
        assert b is None or any(r["dimension"] == dim and r["bits"] == b for r in ok)
