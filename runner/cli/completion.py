"""`runbook completion bash|zsh|fish`: a completion script made from the parser itself, so
it never lists a command or option the parser does not know. Playbook names (for show,
plan, run) come from `runbook list` when the shell asks."""

from __future__ import annotations

import argparse
import shlex

from .exits import EXIT_OK

PLAYBOOK_COMMANDS = ("show", "plan", "run")


def cmd_completion(args: argparse.Namespace) -> int:
    from .parsing import build_parser

    commands = _commands(build_parser())
    script = {"bash": bash, "zsh": zsh, "fish": fish}[args.shell](commands)
    print(script, end="")
    return EXIT_OK


def _commands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, list[str]]]:
    """Command -> (its help, its long and short options)."""
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    return {name: (helps.get(name, ""),
                   [flag for action in p._actions for flag in action.option_strings])
            for name, p in sub.choices.items()}


def bash(commands: dict[str, tuple[str, list[str]]]) -> str:
    cases = "".join(f"    {name}) opts={shlex.quote(' '.join(flags))} ;;\n"
                    for name, (_, flags) in commands.items())
    return f"""\
# runbook completion for bash: eval "$(runbook completion bash)"
_runbook() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} cmd=${{COMP_WORDS[1]}} opts=
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=($(compgen -W {shlex.quote(" ".join(commands) + " --help --version --debug")} \
-- "$cur"))
    return
  fi
  case $cmd in
{cases}  esac
  if [[ $cur != -* && $COMP_CWORD -eq 2 && " {" ".join(PLAYBOOK_COMMANDS)} " == *" $cmd "* ]]; then
    COMPREPLY=($(compgen -W "$(runbook list 2>/dev/null | cut -d' ' -f1)" -- "$cur"))
    return
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -o default -F _runbook runbook
"""


def zsh(commands: dict[str, tuple[str, list[str]]]) -> str:
    # zsh runs bash completion functions through bashcompinit: one script to keep right
    return ("# runbook completion for zsh: eval \"$(runbook completion zsh)\"\n"
            "autoload -U +X bashcompinit && bashcompinit\n"
            + bash(commands).split("\n", 1)[1])


def fish(commands: dict[str, tuple[str, list[str]]]) -> str:
    lines = ["# runbook completion for fish: runbook completion fish | source",
             "complete -c runbook -f"]
    for name, (help_, flags) in commands.items():
        lines.append(f"complete -c runbook -n __fish_use_subcommand -a {name} "
                     f"-d {shlex.quote(help_)}")
        for flag in flags:
            option = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            lines.append(f"complete -c runbook -n '__fish_seen_subcommand_from {name}' "
                         f"{option}")
    lines.append(f"complete -c runbook -n '__fish_seen_subcommand_from "
                 f"{' '.join(PLAYBOOK_COMMANDS)}' -a \"(runbook list 2>/dev/null | "
                 "string split -f1 ' ')\"")
    return "\n".join(lines) + "\n"
