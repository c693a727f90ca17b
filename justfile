# airlock developer front door. `just --list` shows the recipes.

# Build the builder and the runner
build:
    cargo build --release

# The whole test suite, as CI runs it (installs Debian packages when root)
test:
    scripts/test-all

# The judge of the runner (root, Debian 12): five clones of one prepared
# image boot under systemd-nspawn and become the cluster; failover, a
# returning old master, a power cut in a wait. Caches a Debian root file
# system under target/clones/ (first run ~2 minutes more).
clones:
    AIRLOCK_CLONES=1 cargo test --test clones -- --nocapture

# House rules (src/vm and src/shared never use src/build; no fn over 100
# lines), fmt, clippy with warnings as errors, the runner built alone
lint:
    scripts/lint

# Build and verify a bundle from the built-in demo media
demo:
    cargo build --release
    target/release/airlock demo --out /tmp/airlock-demo

# Benchmark repo build against apt-ftparchive, dpkg-scanpackages and openssl
# (fetches ~0.6 GB of real .deb files once; see bench/make-corpus to scale)
bench:
    cargo build --release
    test -f bench/work/main.iso || bench/make-corpus
    bench/run
    bench/run-bundle

# Failover under systemd, five times: `just clones` up to its first failover
failover:
    bench/failover

# The runner for Astra SE 1.7 (glibc 2.28), without the builder's
# dependencies, size-optimised (profile `runner`): cargo-zigbuild from PyPI;
# `airlock build` picks it up from target/x86_64-unknown-linux-gnu/runner/
runner:
    command -v cargo-zigbuild >/dev/null || test -x target/tools/bin/cargo-zigbuild || (python3 -m venv target/tools && target/tools/bin/pip install -q ziglang cargo-zigbuild)
    PATH="$PWD/target/tools/bin:$PATH" cargo zigbuild --profile runner --no-default-features --target x86_64-unknown-linux-gnu.2.28 --bin airlock-firstboot
    @echo "runner: target/x86_64-unknown-linux-gnu/runner/airlock-firstboot (needs at most glibc 2.28)"

# Regenerate the man pages and shell completions in docs/ (CI checks drift)
docs:
    AIRLOCK_UPDATE_DOCS=1 cargo test --test tests docs::man_pages

# Fill vendor/ (Linux x86_64 crates only) and pack target/airlock-src.tar for
# an offline build at the secure site
vendor:
    scripts/vendor

# Fuzz every parser for SECONDS each (default 60): ISO, .deb/control, disc
# index, SHA256SUMS, bundle tar, recipe, role file (FUZZING.md)
fuzz SECONDS="60":
    scripts/fuzz {{SECONDS}}
