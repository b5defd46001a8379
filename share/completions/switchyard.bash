#!/bin/bash

__switchyard_cursor_index_in_current_word() {
    local remaining="${COMP_LINE}"

    local word
    for word in "${COMP_WORDS[@]::COMP_CWORD}"; do
        remaining="${remaining##*([[:space:]])"${word}"*([[:space:]])}"
    done

    local -ir index="$((COMP_POINT - ${#COMP_LINE} + ${#remaining}))"
    if [[ "${index}" -le 0 ]]; then
        printf 0
    else
        printf %s "${index}"
    fi
}

# positional arguments:
#
# - 1: the current (sub)command's count of positional arguments
#
# required variables:
#
# - repeating_flags: the repeating flags that the current (sub)command can accept
# - non_repeating_flags: the non-repeating flags that the current (sub)command can accept
# - repeating_options: the repeating options that the current (sub)command can accept
# - non_repeating_options: the non-repeating options that the current (sub)command can accept
# - positional_number: value ignored
# - unparsed_words: unparsed words from the current command line
#
# modified variables:
#
# - non_repeating_flags: remove flags for this (sub)command that are already on the command line
# - non_repeating_options: remove options for this (sub)command that are already on the command line
# - positional_number: set to the current positional number
# - unparsed_words: remove all flags, options, and option values for this (sub)command
__switchyard_offer_flags_options() {
    local -ir positional_count="${1}"
    positional_number=0

    local was_flag_option_terminator_seen=false
    local is_parsing_option_value=false

    local -ar unparsed_word_indices=("${!unparsed_words[@]}")
    local -i word_index
    for word_index in "${unparsed_word_indices[@]}"; do
        if "${is_parsing_option_value}"; then
            # This word is an option value:
            # Reset marker for next word iff not currently the last word
            [[ "${word_index}" -ne "${unparsed_word_indices[${#unparsed_word_indices[@]} - 1]}" ]] && is_parsing_option_value=false
            unset "unparsed_words[${word_index}]"
            # Do not process this word as a flag or an option
            continue
        fi

        local word="${unparsed_words["${word_index}"]}"
        if ! "${was_flag_option_terminator_seen}"; then
            case "${word}" in
            --)
                unset "unparsed_words[${word_index}]"
                # by itself -- is a flag/option terminator, but if it is the last word, it is the start of a completion
                if [[ "${word_index}" -ne "${unparsed_word_indices[${#unparsed_word_indices[@]} - 1]}" ]]; then
                    was_flag_option_terminator_seen=true
                fi
                continue
                ;;
            -*)
                # ${word} is a flag or an option
                # If ${word} is an option, mark that the next word to be parsed is an option value
                local option
                for option in "${repeating_options[@]}" "${non_repeating_options[@]}"; do
                    [[ "${word}" = "${option}" ]] && is_parsing_option_value=true && break
                done

                # Remove ${word} from ${non_repeating_flags} or ${non_repeating_options} so it isn't offered again
                local not_found=true
                local -i index
                for index in "${!non_repeating_flags[@]}"; do
                    if [[ "${non_repeating_flags[${index}]}" = "${word}" ]]; then
                        unset "non_repeating_flags[${index}]"
                        non_repeating_flags=("${non_repeating_flags[@]}")
                        not_found=false
                        break
                    fi
                done
                if "${not_found}"; then
                    for index in "${!non_repeating_flags[@]}"; do
                        if [[ "${non_repeating_flags[${index}]}" = "${word}" ]]; then
                            unset "non_repeating_flags[${index}]"
                            non_repeating_flags=("${non_repeating_flags[@]}")
                            break
                        fi
                    done
                fi
                unset "unparsed_words[${word_index}]"
                continue
                ;;
            esac
        fi

        # ${word} is neither a flag, nor an option, nor an option value
        if [[ "${positional_number}" -lt "${positional_count}" || "${positional_count}" -lt 0 ]]; then
            # ${word} is a positional
            ((positional_number++))
            unset "unparsed_words[${word_index}]"
        else
            if [[ -z "${word}" ]]; then
                # Could be completing a flag, option, or subcommand
                positional_number=-1
            else
                # ${word} is a subcommand or invalid, so stop processing this (sub)command
                positional_number=-2
            fi
            break
        fi
    done

    unparsed_words=("${unparsed_words[@]}")

    if\
        ! "${was_flag_option_terminator_seen}"\
        && ! "${is_parsing_option_value}"\
        && [[ ("${cur}" = -* && "${positional_number}" -ge 0) || "${positional_number}" -eq -1 ]]
    then
        COMPREPLY+=($(compgen -W "${repeating_flags[*]} ${non_repeating_flags[*]} ${repeating_options[*]} ${non_repeating_options[*]}" -- "${cur}"))
    fi
}

__switchyard_add_completions() {
    local completion
    while IFS='' read -r completion; do
        COMPREPLY+=("${completion}")
    done < <(IFS=$'\n' compgen "${@}" -- "${cur}")
}

__switchyard_custom_complete() {
    if [[ -n "${cur}" || -z ${COMP_WORDS[${COMP_CWORD}]} || "${COMP_LINE:${COMP_POINT}:1}" != ' ' ]]; then
        local -ar words=("${COMP_WORDS[@]}")
    else
        local -ar words=("${COMP_WORDS[@]::${COMP_CWORD}}" '' "${COMP_WORDS[@]:${COMP_CWORD}}")
    fi

    "${COMP_WORDS[0]}" "${@}" "${words[@]}"
}

_switchyard() {
    local state
    state="$(shopt -p;shopt -po)"
    trap "${state//$'\n'/;}" RETURN
    shopt -s extglob
    set +o history +o posix

    local -xr SAP_SHELL=bash
    local -x SAP_SHELL_VERSION
    SAP_SHELL_VERSION="$(IFS='.';printf %s "${BASH_VERSINFO[*]}")"
    local -r SAP_SHELL_VERSION

    local -r cur="${2}"
    local -r prev="${3}"

    local -i positional_number
    local -a unparsed_words=("${COMP_WORDS[@]:1:${COMP_CWORD}}")

    local -a repeating_flags=()
    local -a non_repeating_flags=(-h --help)
    local -a repeating_options=()
    local -a non_repeating_options=()
    __switchyard_offer_flags_options 0

    # Offer subcommand / subcommand argument completions
    local -r subcommand="${unparsed_words[0]}"
    unset 'unparsed_words[0]'
    unparsed_words=("${unparsed_words[@]}")
    case "${subcommand}" in
    run|check|ctl|deploy|console|version|history|demo|demo-app|help)
        # Offer subcommand argument completions
        "_switchyard_${subcommand}"
        ;;
    *)
        # Offer subcommand completions
        COMPREPLY+=($(compgen -W 'run check ctl deploy console version history demo demo-app help' -- "${cur}"))
        ;;
    esac
}

_switchyard_run() {
    repeating_flags=()
    non_repeating_flags=(--takeover -h --help)
    repeating_options=()
    non_repeating_options=(--config -c --ready-file)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--config'|'-c')
        return
        ;;
    '--ready-file')
        return
        ;;
    esac
}

_switchyard_check() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=()
    non_repeating_options=(--config -c)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--config'|'-c')
        return
        ;;
    esac
}

_switchyard_ctl() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=()
    non_repeating_options=()
    __switchyard_offer_flags_options 0

    # Offer subcommand / subcommand argument completions
    local -r subcommand="${unparsed_words[0]}"
    unset 'unparsed_words[0]'
    unparsed_words=("${unparsed_words[@]}")
    case "${subcommand}" in
    status|flip|canary|rules|rollback|weight|drain|undrain|maint|add-server|remove-server|version|lock|unlock|reload|audit|metrics)
        # Offer subcommand argument completions
        "_switchyard_ctl_${subcommand}"
        ;;
    *)
        # Offer subcommand completions
        COMPREPLY+=($(compgen -W 'status flip canary rules rollback weight drain undrain maint add-server remove-server version lock unlock reload audit metrics' -- "${cur}"))
        ;;
    esac
}

_switchyard_ctl_status() {
    repeating_flags=()
    non_repeating_flags=(--json --watch -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match --interval --service)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    '--interval')
        return
        ;;
    '--service')
        return
        ;;
    esac
}

_switchyard_ctl_flip() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match --to)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    '--to')
        return
        ;;
    esac
}

_switchyard_ctl_canary() {
    repeating_flags=()
    non_repeating_flags=(--json --sticky-client-ip --no-sticky --no-guard -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match --pool --weight --sticky-cookie --sticky-header --guard-error-rate --guard-min-requests --guard-window)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    '--pool')
        return
        ;;
    '--weight')
        return
        ;;
    '--sticky-cookie')
        return
        ;;
    '--sticky-header')
        return
        ;;
    '--guard-error-rate')
        return
        ;;
    '--guard-min-requests')
        return
        ;;
    '--guard-window')
        return
        ;;
    esac
}

_switchyard_ctl_rules() {
    repeating_flags=()
    non_repeating_flags=(--json --clear -h --help)
    repeating_options=(--rule)
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    '--rule')
        return
        ;;
    esac
}

_switchyard_ctl_rollback() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    esac
}

_switchyard_ctl_weight() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match)
    __switchyard_offer_flags_options 2

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    esac
}

_switchyard_ctl_drain() {
    repeating_flags=()
    non_repeating_flags=(--json --wait -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match --timeout)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    '--timeout')
        return
        ;;
    esac
}

_switchyard_ctl_undrain() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    esac
}

_switchyard_ctl_maint() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    esac
}

_switchyard_ctl_add-server() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match --weight --state)
    __switchyard_offer_flags_options 2

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    '--weight')
        return
        ;;
    '--state')
        __switchyard_add_completions -W 'ready'$'\n''drain'$'\n''maint'
        return
        ;;
    esac
}

_switchyard_ctl_remove-server() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    esac
}

_switchyard_ctl_version() {
    repeating_flags=()
    non_repeating_flags=(--json --clear -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match)
    __switchyard_offer_flags_options 2

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    esac
}

_switchyard_ctl_lock() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match --owner --ttl --reason --service)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    '--owner')
        return
        ;;
    '--ttl')
        return
        ;;
    '--reason')
        return
        ;;
    '--service')
        return
        ;;
    esac
}

_switchyard_ctl_unlock() {
    repeating_flags=()
    non_repeating_flags=(--json --force -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match --service)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    '--service')
        return
        ;;
    esac
}

_switchyard_ctl_reload() {
    repeating_flags=()
    non_repeating_flags=(--json --reset -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    esac
}

_switchyard_ctl_audit() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match --limit)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    '--limit')
        return
        ;;
    esac
}

_switchyard_ctl_metrics() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--admin --token-file --ca --tls-server-name --actor --lock-token --if-match)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--admin')
        return
        ;;
    '--token-file')
        return
        ;;
    '--ca')
        return
        ;;
    '--tls-server-name')
        return
        ;;
    '--actor')
        return
        ;;
    '--lock-token')
        return
        ;;
    '--if-match')
        return
        ;;
    esac
}

_switchyard_deploy() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=()
    non_repeating_options=()
    __switchyard_offer_flags_options 0

    # Offer subcommand / subcommand argument completions
    local -r subcommand="${unparsed_words[0]}"
    unset 'unparsed_words[0]'
    unparsed_words=("${unparsed_words[@]}")
    case "${subcommand}" in
    check|run|status|pause|resume|promote|abort|approve|unlock|upload)
        # Offer subcommand argument completions
        "_switchyard_deploy_${subcommand}"
        ;;
    *)
        # Offer subcommand completions
        COMPREPLY+=($(compgen -W 'check run status pause resume promote abort approve unlock upload' -- "${cur}"))
        ;;
    esac
}

_switchyard_deploy_check() {
    repeating_flags=()
    non_repeating_flags=(--connect -h --help)
    repeating_options=()
    non_repeating_options=()
    __switchyard_offer_flags_options 1
}

_switchyard_deploy_run() {
    repeating_flags=()
    non_repeating_flags=(--json --die-with-parent -h --help)
    repeating_options=(--env)
    non_repeating_options=(--version --actor --history --run-id --commit --commit-time --ticket --link --changelog --changelog-file --console --console-ca --flush-timeout)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--version')
        return
        ;;
    '--actor')
        return
        ;;
    '--env')
        return
        ;;
    '--history')
        return
        ;;
    '--run-id')
        return
        ;;
    '--commit')
        return
        ;;
    '--commit-time')
        return
        ;;
    '--ticket')
        return
        ;;
    '--link')
        return
        ;;
    '--changelog')
        return
        ;;
    '--changelog-file')
        return
        ;;
    '--console')
        return
        ;;
    '--console-ca')
        return
        ;;
    '--flush-timeout')
        return
        ;;
    esac
}

_switchyard_deploy_status() {
    repeating_flags=()
    non_repeating_flags=(--json --watch -h --help)
    repeating_options=()
    non_repeating_options=(--history --service --console --console-ca)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--history')
        return
        ;;
    '--service')
        return
        ;;
    '--console')
        return
        ;;
    '--console-ca')
        return
        ;;
    esac
}

_switchyard_deploy_pause() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=()
    non_repeating_options=(--actor --history --service --console --console-ca)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--actor')
        return
        ;;
    '--history')
        return
        ;;
    '--service')
        return
        ;;
    '--console')
        return
        ;;
    '--console-ca')
        return
        ;;
    esac
}

_switchyard_deploy_resume() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=()
    non_repeating_options=(--actor --history --service --console --console-ca)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--actor')
        return
        ;;
    '--history')
        return
        ;;
    '--service')
        return
        ;;
    '--console')
        return
        ;;
    '--console-ca')
        return
        ;;
    esac
}

_switchyard_deploy_promote() {
    repeating_flags=()
    non_repeating_flags=(--full -h --help)
    repeating_options=()
    non_repeating_options=(--actor --history --service --console --console-ca)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--actor')
        return
        ;;
    '--history')
        return
        ;;
    '--service')
        return
        ;;
    '--console')
        return
        ;;
    '--console-ca')
        return
        ;;
    esac
}

_switchyard_deploy_abort() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=()
    non_repeating_options=(--actor --history --service --console --console-ca --run-id --flush-timeout)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--actor')
        return
        ;;
    '--history')
        return
        ;;
    '--service')
        return
        ;;
    '--console')
        return
        ;;
    '--console-ca')
        return
        ;;
    '--run-id')
        return
        ;;
    '--flush-timeout')
        return
        ;;
    esac
}

_switchyard_deploy_approve() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=()
    non_repeating_options=(--actor --history --service --console --console-ca --env)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--actor')
        return
        ;;
    '--history')
        return
        ;;
    '--service')
        return
        ;;
    '--console')
        return
        ;;
    '--console-ca')
        return
        ;;
    '--env')
        return
        ;;
    esac
}

_switchyard_deploy_unlock() {
    repeating_flags=()
    non_repeating_flags=(--force -h --help)
    repeating_options=()
    non_repeating_options=(--env --actor)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--env')
        return
        ;;
    '--actor')
        return
        ;;
    esac
}

_switchyard_deploy_upload() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=()
    non_repeating_options=(--db --plan --console --console-ca --run --timeout)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--db')
        return
        ;;
    '--plan')
        return
        ;;
    '--console')
        return
        ;;
    '--console-ca')
        return
        ;;
    '--run')
        return
        ;;
    '--timeout')
        return
        ;;
    esac
}

_switchyard_console() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=(--plan)
    non_repeating_options=(--config -c --listen --database --data-dir)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--config'|'-c')
        return
        ;;
    '--listen')
        return
        ;;
    '--database')
        return
        ;;
    '--data-dir')
        return
        ;;
    '--plan')
        return
        ;;
    esac
}

_switchyard_version() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=()
    non_repeating_options=(--ticket --module)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--ticket')
        return
        ;;
    '--module')
        return
        ;;
    esac
}

_switchyard_history() {
    repeating_flags=()
    non_repeating_flags=(-h --help)
    repeating_options=()
    non_repeating_options=()
    __switchyard_offer_flags_options 0

    # Offer subcommand / subcommand argument completions
    local -r subcommand="${unparsed_words[0]}"
    unset 'unparsed_words[0]'
    unparsed_words=("${unparsed_words[@]}")
    case "${subcommand}" in
    list|show)
        # Offer subcommand argument completions
        "_switchyard_history_${subcommand}"
        ;;
    *)
        # Offer subcommand completions
        COMPREPLY+=($(compgen -W 'list show' -- "${cur}"))
        ;;
    esac
}

_switchyard_history_list() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--db --plan --env --service --limit --console --console-ca)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--db')
        return
        ;;
    '--plan')
        return
        ;;
    '--env')
        return
        ;;
    '--service')
        return
        ;;
    '--limit')
        return
        ;;
    '--console')
        return
        ;;
    '--console-ca')
        return
        ;;
    esac
}

_switchyard_history_show() {
    repeating_flags=()
    non_repeating_flags=(--json -h --help)
    repeating_options=()
    non_repeating_options=(--db --plan)
    __switchyard_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--db')
        return
        ;;
    '--plan')
        return
        ;;
    esac
}

_switchyard_demo() {
    repeating_flags=()
    non_repeating_flags=(--print-config --no-console -h --help)
    repeating_options=()
    non_repeating_options=(--directory)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--directory')
        return
        ;;
    esac
}

_switchyard_demo-app() {
    repeating_flags=()
    non_repeating_flags=(--exit-with-parent -h --help)
    repeating_options=()
    non_repeating_options=(--name --listen --ready-file --request-log --drop-after --always-status --load --error-rate --delay)
    __switchyard_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--name')
        return
        ;;
    '--listen')
        return
        ;;
    '--ready-file')
        return
        ;;
    '--request-log')
        return
        ;;
    '--drop-after')
        return
        ;;
    '--always-status')
        return
        ;;
    '--load')
        return
        ;;
    '--error-rate')
        return
        ;;
    '--delay')
        return
        ;;
    esac
}

_switchyard_help() {
    :
}

complete -o filenames -F _switchyard switchyard
