"""frs-eval: one command family over the evaluations, each handed to the module that owns it."""

import pytest

from frs_ros import eval_cli


def test_usage_lists_every_command_with_its_module(capsys):
    assert eval_cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (module, _prefix, _about) in eval_cli.COMMANDS.items():
        assert f"  {name} " in out and module in out
    assert eval_cli.main([]) == 2  # no command: the usage, and a failure status


def test_unknown_command_is_refused_with_the_usage(capsys):
    assert eval_cli.main(["twinn"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'twinn'" in err and "heldout" in err


@pytest.mark.parametrize("command, own_option", [("twin", "--episodes"), ("reasoner", "oracle"),
                                                 ("heldout", "--config"), ("bag", "--annotations")])
def test_each_command_reaches_its_modules_parser(command, own_option, capsys):
    """`frs-eval <command> --help` is the owning module's own help (argparse exits 0 after printing it)."""
    with pytest.raises(SystemExit) as info:
        eval_cli.main([command, "--help"])
    assert info.value.code == 0
    assert own_option in capsys.readouterr().out


def test_heldout_is_frs_train_eval():
    fn, prefix = eval_cli.resolve("heldout")
    from frs_ros.training.cli import main as train_main

    assert fn is train_main and prefix == ("eval",)
