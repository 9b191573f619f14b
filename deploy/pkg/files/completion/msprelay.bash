# bash completion for msp and msprelay-node, installed by the msprelay
# package as /usr/share/bash-completion/completions/{msp,msprelay-node}.
# Commands and flags are read from the programs' own help, so they follow
# the installed version.

# _msprelay_flags CMD...: the flags CMD -h lists, spelled --name.
_msprelay_flags() {
    "$@" -h 2>&1 | sed -n 's/^ \{1,4\}-\{1,2\}\([A-Za-z0-9][-A-Za-z0-9]*\).*/--\1/p'
}

# _msprelay_values FLAG: the words a flag takes, when they are few.
_msprelay_values() {
    case $1 in
    --terminals) echo "on off" ;;
    --log-level) echo "trace debug info warn error" ;;
    --log-format) echo "text json" ;;
    --session-auth) echo "trust secret" ;;
    --offline) echo "queue refuse" ;;
    --gossip-profile) echo "lan wan local" ;;
    --tty-charset) echo "UTF-8 ISO-8859-1 ASCII" ;;
    *) return 1 ;;
    esac
}

_msp() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    COMPREPLY=()
    if [[ $COMP_CWORD -eq 1 ]]; then
        local cmds
        cmds=$("${COMP_WORDS[0]}" help 2>/dev/null | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\).*/\1/p')
        mapfile -t COMPREPLY < <(compgen -W "$cmds --help --version" -- "$cur")
        return
    fi
    local vals
    if vals=$(_msprelay_values "$prev"); then
        mapfile -t COMPREPLY < <(compgen -W "$vals" -- "$cur")
        return
    fi
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(_msprelay_flags "${COMP_WORDS[0]}" "${COMP_WORDS[1]}")" -- "$cur")
        return
    fi
    case ${COMP_WORDS[1]} in
    send | who) mapfile -t COMPREPLY < <(compgen -u -- "$cur") ;;
    esac
}

_msprelay_node() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    COMPREPLY=()
    local vals
    if vals=$(_msprelay_values "$prev"); then
        mapfile -t COMPREPLY < <(compgen -W "$vals" -- "$cur")
        return
    fi
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(_msprelay_flags "${COMP_WORDS[0]}")" -- "$cur")
    fi
}

# -o default: file names where nothing else fits (--data, --utmp, ...).
complete -o default -F _msp msp
complete -o default -F _msprelay_node msprelay-node
