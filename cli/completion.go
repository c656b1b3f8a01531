package cli

import (
	"io"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// Shell completion: each script asks the binary itself for the words that
// may follow, by running the command line typed so far with urfave's hidden
// --generate-bash-completion flag last (App.EnableBashCompletion). It prints
// the subcommands of the command typed, or, when the word being completed
// starts with "-", that command's flags. When it prints nothing (a flag's
// value, a file argument) the shells fall back to completing file names.

// Scripts that `hodei completion SHELL` prints (constants: nothing to
// build at start-up).
const (
	bashCompletion = `# bash completion for hodei.
# Load it now:        source <(hodei completion bash)
# Or for every shell: hodei completion bash > /etc/bash_completion.d/hodei
_hodei() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local -a args=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
  if [[ "$cur" == -* ]]; then
    args+=("$cur")
  fi
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${args[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _hodei hodei
`
	zshCompletion = `#compdef hodei
# zsh completion for hodei (needs compinit: autoload -U compinit && compinit).
# Load it now:        source <(hodei completion zsh)
# Or for every shell: hodei completion zsh > "${fpath[1]}/_hodei"
_hodei() {
  local -a args opts
  args=("${(@)words[2,CURRENT-1]}")
  if [[ "${words[CURRENT]}" == -* ]]; then
    args+=("${words[CURRENT]}")
  fi
  opts=("${(@f)$(${words[1]} "${(@)args}" --generate-bash-completion 2>/dev/null)}")
  if [[ -n "${opts[1]}" ]]; then
    compadd -- "${(@)opts}"
  else
    _files
  fi
}
if [[ "${funcstack[1]}" == "_hodei" ]]; then
  _hodei "$@"
else
  compdef _hodei hodei
fi
`
	fishCompletion = `# fish completion for hodei.
# Load it now:        hodei completion fish | source
# Or for every shell: hodei completion fish > ~/.config/fish/completions/hodei.fish
function __hodei_complete
    set -l args (commandline -opc)
    set -l cur (commandline -ct)
    set -l cmd $args[1]
    set -e args[1]
    if string match -q -- '-*' $cur
        set -a args $cur
    end
    set -l opts ($cmd $args --generate-bash-completion 2>/dev/null)
    if test (count $opts) -gt 0
        printf '%s\n' $opts
    else
        __fish_complete_path $cur
    end
end
complete -c hodei -f -a '(__hodei_complete)'
`
)

// completionScript is the completion script for shell, if hodei has one.
func completionScript(shell string) (string, bool) {
	switch shell {
	case "bash":
		return bashCompletion, true
	case "zsh":
		return zshCompletion, true
	case "fish":
		return fishCompletion, true
	}
	return "", false
}

func completionCommand(*env) *ucli.Command {
	return &ucli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "SHELL",
		Description: `Prints a script that completes hodei's commands, subcommands and flags.
Load it in the current shell:

   bash:  source <(hodei completion bash)
   zsh:   source <(hodei completion zsh)
   fish:  hodei completion fish | source

or install it for every shell:

   bash:  hodei completion bash > /etc/bash_completion.d/hodei
   zsh:   hodei completion zsh > "${fpath[1]}/_hodei"
   fish:  hodei completion fish > ~/.config/fish/completions/hodei.fish`,
		Action: func(c *ucli.Context) error {
			a, err := args(c, "SHELL")
			if err != nil {
				return err
			}
			script, ok := completionScript(a[0])
			if !ok {
				return usagef(c, "SHELL: %q is not a shell hodei completes; use bash, zsh or fish", a[0])
			}
			_, err = io.WriteString(c.App.Writer, script)
			return err
		},
	}
}

// completeLeaf is the completion of a command that takes no subcommand:
// its flags when the word being completed starts with "-", else nothing,
// so that the shell offers file names (urfave's default would offer
// "help", which such a command takes as an argument). urfave reads the
// words from os.Args; the word before its completion flag is the one
// being completed.
func completeLeaf(c *ucli.Context) {
	if n := len(os.Args); n > 2 && strings.HasPrefix(os.Args[n-2], "-") {
		ucli.DefaultCompleteWithFlags(c.Command)(c)
	}
}
