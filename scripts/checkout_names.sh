# Sourced by the GPU scripts (`. scripts/checkout_names.sh` from the repository's root): the checkout's
# packages importable under their installed names without installing anything, as a GPU host runs them from
# a copy of the repository: train/ as spokester_train and agents/ as spokester_agents, through links in a
# temporary folder (removed when the script ends), both on PYTHONPATH with the root.
names=$(mktemp -d)
trap 'rm -rf "$names"' EXIT
ln -s "$PWD/train" "$names/spokester_train"
ln -s "$PWD/agents" "$names/spokester_agents"
export PYTHONPATH=$PWD:$names${PYTHONPATH:+:$PYTHONPATH}
