# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_airlock_global_optspecs
    string join \n h/help V/version
end

function __fish_airlock_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_airlock_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_airlock_using_subcommand
    set -l cmd (__fish_airlock_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c airlock -n "__fish_airlock_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_needs_command" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "plan" -d 'Check a recipe and show every value each host will use'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "check" -d 'Check that apt can install each role\'s packages from the discs onto the reference VM\'s base'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "build" -d 'Build the whole bundle: signed repository, seeds, vendor disc, runner, signed SHA256SUMS'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "verify" -d 'Check a bundle (directory or tar) against its signed SHA256SUMS'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "inspect" -d 'Show what a bundle holds: cluster, hosts, discs, signers, runner, volumes'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "diff" -d 'Show what a new bundle changes against an old one: packages, each host\'s payload, the runner'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "apply" -d 'Make the whole new bundle from a delta and the bundle it was built against, and verify it'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "demo" -d 'Build and verify a bundle from built-in demo media (no discs needed)'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "bake" -d 'Render every VM\'s payload and cloud-init seed from a recipe'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "keygen" -d 'Generate the site\'s archive signing key'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "repo" -d 'Work with the signed apt repository on its own'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "report" -d 'Hold the VMs\' as-built reports against the bundle'
complete -c airlock -n "__fish_airlock_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock -n "__fish_airlock_using_subcommand plan" -l json -d 'Print the plan and the problems as JSON on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand plan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand plan" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand check" -l json -d 'Print the verdict per role, with every problem, as JSON on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand check" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand build" -l key -d 'The armored secret signing key (from `airlock keygen`); repeat it to sign with several keys, in that order' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand build" -l out -d 'The bundle directory to write (replaced when the build succeeds)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand build" -l tar -d 'Also write the bundle as one deterministic tar (.tar, or .tar.gz to compress)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand build" -l secrets -d 'Secrets file to read or create (default: RECIPE with .secrets.toml)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand build" -l runner -d 'The airlock-firstboot binary to ship (default: next to this airlock)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand build" -l with-source -d 'Add airlock\'s source and vendored crates (target/airlock-src.tar from `just vendor`) as source/airlock-src.tar' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand build" -l volume-size -d 'Cut the bundle into volumes DIR/volumes/NN/ of at most SIZE bytes, each verifying alone: dvd, dvd-dl, bd25, bd50, fat32, or bytes with a K, M or G suffix' -r
complete -c airlock -n "__fish_airlock_using_subcommand build" -l base -d 'Write to DIR only what this earlier bundle lacks (a delta for `airlock apply`; with --volume-size, in volumes): its directory, its tar, or just its SHA256SUMS' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand build" -l no-dir -d 'Write only the tar (--tar), no directory: the packages are streamed from the discs into it, each checked against its disc\'s index as it goes (no --out); a cache beside FILE (.FILE.airlock-repo-cache.json) keeps each package\'s control for the next --no-dir build'
complete -c airlock -n "__fish_airlock_using_subcommand build" -l allow-new-glibc -d 'Ship a runner that needs a glibc newer than Astra SE 1.7\'s 2.28 (for tests on other systems)'
complete -c airlock -n "__fish_airlock_using_subcommand build" -l allow-incomplete -d 'Build even when apt could not install some role\'s packages from the bundle (see `airlock check`)'
complete -c airlock -n "__fish_airlock_using_subcommand build" -l iso -d 'With --volume-size: each volume also as DIR/volumes/NN.iso (ISO 9660, Rock Ridge, Joliet; label AIRLOCK_<CLUSTER>_NN; needs xorriso)'
complete -c airlock -n "__fish_airlock_using_subcommand build" -l json -d 'Print a summary as JSON on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand build" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand build" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand verify" -l keyring -d 'A keyring whose keys are trusted (default: the bundle\'s own; for apply, OLD\'s); repeatable' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand verify" -l require-signers -d 'How many distinct keys of the keyrings must have signed' -r
complete -c airlock -n "__fish_airlock_using_subcommand verify" -l json -d 'Print the report as JSON on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand verify" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -l keyring -d 'A keyring whose keys are trusted (default: the bundle\'s own; for apply, OLD\'s); repeatable' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -l require-signers -d 'How many distinct keys of the keyrings must have signed' -r
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -l json -d 'Print the inspection as JSON on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand inspect" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand diff" -l keyring -d 'A keyring whose keys are trusted (default: the bundle\'s own; for apply, OLD\'s); repeatable' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand diff" -l require-signers -d 'How many distinct keys of the keyrings must have signed' -r
complete -c airlock -n "__fish_airlock_using_subcommand diff" -l json -d 'Print the comparison as JSON on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand diff" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand diff" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand apply" -l to -d 'The earlier bundle the delta was built against: its directory, or its tar (`build --tar`)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand apply" -l out -d 'The new bundle\'s directory (new, empty, an earlier bundle, or OLD itself); replaced only once it verifies' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand apply" -l keyring -d 'A keyring whose keys are trusted (default: the bundle\'s own; for apply, OLD\'s); repeatable' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand apply" -l require-signers -d 'How many distinct keys of the keyrings must have signed' -r
complete -c airlock -n "__fish_airlock_using_subcommand apply" -l json -d 'Print the result as JSON on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand apply" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand apply" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand demo" -l out -d 'Directory for the demo media, recipe and bundle' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand demo" -l runner -d 'The airlock-firstboot binary to ship (default: next to this airlock)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand demo" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand bake" -l out -d 'Directory to write payloads/, seeds/ and inventory.toml into' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand bake" -l secrets -d 'Secrets file to read, or create on first use (default DIR/secrets.toml)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand bake" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand bake" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand keygen" -l out -d 'Directory to write the key files into (created if missing)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand keygen" -l name -d 'The key\'s user id name' -r
complete -c airlock -n "__fish_airlock_using_subcommand keygen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand keygen" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand repo; and not __fish_seen_subcommand_from build help" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand repo; and not __fish_seen_subcommand_from build help" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand repo; and not __fish_seen_subcommand_from build help" -f -a "build" -d 'Merge the main, devel and update discs into one signed apt repository'
complete -c airlock -n "__fish_airlock_using_subcommand repo; and not __fish_seen_subcommand_from build help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -l main -d 'The Astra SE 1.7 main disc: an .iso file or a directory with pool/ and dists/' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -l devel -d 'The Astra SE 1.7 devel disc (optional), same forms as --main' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -l update -d 'An update disc, same forms as --main; repeat it for several, merged after main and devel in the order given' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -l key -d 'The armored secret signing key (from `airlock keygen`, or your own); repeat it to sign with several keys, in that order' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -l out -d 'The repository directory to write (replaced when the build succeeds)' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -l suite -d 'apt suite (and codename) of the repository' -r
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -l disc-keyring -d 'The disc vendor\'s public key, to check the signature of a disc\'s Release' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -l jobs -d 'Worker threads (default: one per core)' -r
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -l allow-unlisted -d 'Accept .deb files that a disc\'s own index does not list (they are reported)'
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -l json -d 'Print a summary as JSON on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from build" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from help" -f -a "build" -d 'Merge the main, devel and update discs into one signed apt repository'
complete -c airlock -n "__fish_airlock_using_subcommand repo; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock -n "__fish_airlock_using_subcommand report; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c airlock -n "__fish_airlock_using_subcommand report; and not __fish_seen_subcommand_from check help" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand report; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Check an as-built report against the bundle: is every installed package from it?'
complete -c airlock -n "__fish_airlock_using_subcommand report; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock -n "__fish_airlock_using_subcommand report; and __fish_seen_subcommand_from check" -l bundle -d 'The bundle directory the hosts were built from' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand report; and __fish_seen_subcommand_from check" -l keyring -d 'A keyring whose keys are trusted (default: the bundle\'s own; for apply, OLD\'s); repeatable' -r -F
complete -c airlock -n "__fish_airlock_using_subcommand report; and __fish_seen_subcommand_from check" -l require-signers -d 'How many distinct keys of the keyrings must have signed' -r
complete -c airlock -n "__fish_airlock_using_subcommand report; and __fish_seen_subcommand_from check" -l json -d 'Print the result as JSON on stdout'
complete -c airlock -n "__fish_airlock_using_subcommand report; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c airlock -n "__fish_airlock_using_subcommand report; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c airlock -n "__fish_airlock_using_subcommand report; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check an as-built report against the bundle: is every installed package from it?'
complete -c airlock -n "__fish_airlock_using_subcommand report; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "plan" -d 'Check a recipe and show every value each host will use'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "check" -d 'Check that apt can install each role\'s packages from the discs onto the reference VM\'s base'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "build" -d 'Build the whole bundle: signed repository, seeds, vendor disc, runner, signed SHA256SUMS'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "verify" -d 'Check a bundle (directory or tar) against its signed SHA256SUMS'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "inspect" -d 'Show what a bundle holds: cluster, hosts, discs, signers, runner, volumes'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "diff" -d 'Show what a new bundle changes against an old one: packages, each host\'s payload, the runner'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "apply" -d 'Make the whole new bundle from a delta and the bundle it was built against, and verify it'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "demo" -d 'Build and verify a bundle from built-in demo media (no discs needed)'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "bake" -d 'Render every VM\'s payload and cloud-init seed from a recipe'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "keygen" -d 'Generate the site\'s archive signing key'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "repo" -d 'Work with the signed apt repository on its own'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "report" -d 'Hold the VMs\' as-built reports against the bundle'
complete -c airlock -n "__fish_airlock_using_subcommand help; and not __fish_seen_subcommand_from plan check build verify inspect diff apply demo bake keygen repo report help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c airlock -n "__fish_airlock_using_subcommand help; and __fish_seen_subcommand_from repo" -f -a "build" -d 'Merge the main, devel and update discs into one signed apt repository'
complete -c airlock -n "__fish_airlock_using_subcommand help; and __fish_seen_subcommand_from report" -f -a "check" -d 'Check an as-built report against the bundle: is every installed package from it?'
