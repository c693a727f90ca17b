# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_airlock_firstboot_global_optspecs
    string join \n h/help V/version
end

function __fish_airlock_firstboot_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_airlock_firstboot_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_airlock_firstboot_using_subcommand
    set -l cmd (__fish_airlock_firstboot_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -s V -l version -d 'Print version'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "run" -d 'Perform this VM\'s role, step by step, and join the cluster'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "status" -d 'Show the role, each step\'s state, what it waits for, the last error; with --cluster, every host\'s'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "prepare" -d 'Prepare the reference VM from the bundle and seal it for cloning (run once, before cloning)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "update" -d 'Move this VM\'s repository on to the next bundle with a delta (`airlock build --base`)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "role" -d 'Show who this VM is: host, role, address, peers'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "token" -d 'Print the swarm manager join token (the leader\'s forced SSH command)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "pg-guard" -d 'Run by PostgreSQL\'s unit before each start: never a second writable primary'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "rejoin" -d 'Make this former primary a streaming standby of its peer, the primary now'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "answer" -d 'Answer another cluster host\'s question (the peer user\'s forced SSH command)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "quorum" -d 'keepalived\'s check on a DB server: the split-brain guard (exit 0: may hold the VIP)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "promote" -d 'keepalived\'s notify_master: promote the standby if the witnesses agree'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "report" -d 'Write this host\'s as-built report: every installed package with its hashes, changed files, the journal'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand run" -l role-file -d 'The role file (default: /etc/airlock/role.toml under --root)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand run" -l bundle -d 'A bundle to find this VM in (inventory.toml, by MAC or SMBIOS UUID) when it has no role file and no seed (default: the inventory `prepare` left in /opt/airlock)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand run" -l wait -d 'Upper bound of each wait, in seconds' -r
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand run" -l quiet -d 'Do not print the `+ command` lines'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand run" -s h -l help -d 'Print help'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand status" -l root -d 'Treat this directory as / (a clone\'s or the reference VM\'s disk, mounted)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand status" -l json -d 'Print the state and the journal as JSON (with --cluster: the whole cluster\'s status)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand status" -l cluster -d 'Ask every host of the cluster and judge whether the whole cluster is ready (as root)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand prepare" -l bundle -d 'The bundle directory (as written by `airlock build`), or one of its volumes (repeat --bundle for each; on a terminal the missing ones are asked for, one disc after the other)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand prepare" -l base -d 'With a delta as --bundle (from `airlock build --base`: its directory, tar, or its volumes, one --bundle each): the earlier bundle\'s directory it was built against' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand prepare" -l root -d 'Treat this directory as / (a clone\'s or the reference VM\'s disk, mounted)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand prepare" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand update" -l bundle -d 'The delta directory (from `airlock build --base`), its tar (`--tar`), or one of its volumes (`--volume-size`: repeat --bundle for each; on a terminal the missing ones are asked for), built against the bundle this VM has' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand update" -l root -d 'Treat this directory as / (a clone\'s or the reference VM\'s disk, mounted)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand update" -l json -d 'Print what was done as JSON'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand update" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand role" -l role-file -d 'The role file (default: /etc/airlock/role.toml under --root)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand role" -l root -d 'Treat this directory as / (a clone\'s or the reference VM\'s disk, mounted)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand role" -l json -d 'Print the whole role file as JSON'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand role" -s h -l help -d 'Print help'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand token" -l root -d 'Treat this directory as / (a clone\'s or the reference VM\'s disk, mounted)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand token" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand pg-guard" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand rejoin" -l wait -d 'Upper bound of the wait for streaming, in seconds' -r
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand rejoin" -l quiet -d 'Do not print the `+ command` lines'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand rejoin" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand answer" -l root -d 'Treat this directory as / (a clone\'s or the reference VM\'s disk, mounted)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand answer" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand quorum" -l root -d 'Treat this directory as / (a clone\'s or the reference VM\'s disk, mounted)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand quorum" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand promote" -l root -d 'Treat this directory as / (a clone\'s or the reference VM\'s disk, mounted)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand promote" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand report" -l out -d 'Write the report (JSON) to FILE, atomically' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand report" -l root -d 'Treat this directory as / (a clone\'s or the reference VM\'s disk, mounted)' -r -F
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand report" -l host-only -d 'Print only this host\'s section as JSON on stdout'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "run" -d 'Perform this VM\'s role, step by step, and join the cluster'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "status" -d 'Show the role, each step\'s state, what it waits for, the last error; with --cluster, every host\'s'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "prepare" -d 'Prepare the reference VM from the bundle and seal it for cloning (run once, before cloning)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "update" -d 'Move this VM\'s repository on to the next bundle with a delta (`airlock build --base`)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "role" -d 'Show who this VM is: host, role, address, peers'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "token" -d 'Print the swarm manager join token (the leader\'s forced SSH command)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "pg-guard" -d 'Run by PostgreSQL\'s unit before each start: never a second writable primary'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "rejoin" -d 'Make this former primary a streaming standby of its peer, the primary now'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "answer" -d 'Answer another cluster host\'s question (the peer user\'s forced SSH command)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "quorum" -d 'keepalived\'s check on a DB server: the split-brain guard (exit 0: may hold the VIP)'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "promote" -d 'keepalived\'s notify_master: promote the standby if the witnesses agree'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "report" -d 'Write this host\'s as-built report: every installed package with its hashes, changed files, the journal'
complete -c airlock-firstboot -n "__fish_airlock_firstboot_using_subcommand help; and not __fish_seen_subcommand_from run status prepare update role token pg-guard rejoin answer quorum promote report help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
