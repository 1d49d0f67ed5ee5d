# Sourced by scripts/gpu_check.sh and scripts/gpu_quality.sh on a GPU machine without network,
# with $repo (the repository) and $work (the recipe's work directory) set: installs the wheels
# carried in $repo/.whl/ to /tmp/site (on PYTHONPATH and PATH afterwards) and unpacks the
# prepared corpus $repo/.gpu/work.tgz into $work. Returns non-zero if either fails.
if compgen -G "$repo/.whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$repo"/.whl/*.whl || return 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH
fi
if [ -f "$repo/.gpu/work.tgz" ]; then
    mkdir -p "$work" && tar xzf "$repo/.gpu/work.tgz" -C "$work" || return 1
fi
