"""fxp build's refusals (the iCEBreaker bitstream end to end is tests/test_demo.py's)."""



from fxp.cli import main


def test_build_refuses_a_folder_without_a_board_design(quick_bnn, tmp_path, capsys):
    """The bitstream itself is built and checked by fxp demo's test (tests/test_demo.py)."""
    assert main(["build", str(tmp_path / "nowhere")]) == 2
    assert main(["gen", "model", str(quick_bnn), "--cycles", "16", "--out", str(tmp_path / "plain")]) == 0
    assert main(["build", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err
    assert "holds no board design; make one with fxp gen model MODEL --board NAME" in err
    assert not (tmp_path / "plain" / "report.json").exists()


def test_a_design_that_does_not_fit_is_refused_naming_a_folding_that_would(quick_bnn, tmp_path, monkeypatch, capsys):
    """Yosys's counts over the device (check_fit's DoesNotFit, 1.3x here) stop the build before place and
    route; the one-line error names the command that folds the network slower."""
    from hdl_gen import board_build, synth
    from hdl_gen.synth import DoesNotFit

    out = tmp_path / "icebreaker"
    assert main(["gen", "model", str(quick_bnn), "--board", "icebreaker", "--cycles", "16", "--out", str(out)]) == 0
    ran = []

    def yosys_over_the_device(cmd, cwd, timeout, what):
        ran.append(what)
        raise DoesNotFit("the design does not fit iCE40UP5K: it needs 6864 logic cells (LUT4 or FF) of 5280", 1.3)

    monkeypatch.setattr(board_build, "_run", yosys_over_the_device)
    monkeypatch.setattr(synth, "_run", yosys_over_the_device)  # the yosys step, through synth.run_yosys
    assert main(["build", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(ran) == 1 and ran[0].startswith("yosys")  # nothing after the step that found it
    assert err.count("\n") == 0 and "needs 6864 logic cells" in err
    assert f"--board icebreaker --cycles 64 --force --out {out}" in err  # 2 x 1.3 -> 4x the 16 cycles
    assert not (out / "report.json").exists()


def test_a_tool_that_fails_or_runs_out_of_memory_is_one_line(quick_bnn, tmp_path, monkeypatch, capsys):
    from hdl_gen import board_build, synth

    out = tmp_path / "icebreaker"
    assert main(["gen", "model", str(quick_bnn), "--board", "icebreaker", "--cycles", "16", "--out", str(out)]) == 0
    (out / "report.json").write_text("{}")  # an earlier build's report: a failed build must not leave it

    def out_of_memory(cmd, cwd, timeout, what):
        raise synth.ToolFailed(f"{what} ran out of the 4 GiB WebAssembly memory of the YoWASP tools; fold the unit "
                               "(smaller PE*SIMD) or synthesise with a native Yosys (apt-get install yosys)")

    monkeypatch.setattr(board_build, "_run", out_of_memory)
    monkeypatch.setattr(synth, "_run", out_of_memory)  # the yosys step, through synth.run_yosys
    which = synth.shutil.which
    monkeypatch.setattr(synth.shutil, "which",  # no native Yosys to fall back on
                        lambda name, path=None: None if name == "yosys" else which(name, path=path))
    assert main(["build", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "ran out of the 4 GiB WebAssembly memory" in err
    assert not (out / "report.json").exists()
