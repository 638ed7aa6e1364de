"""``python -m alchemy_obs.flows``: print the path of the shipped ``prefect.yaml``.

Deploy the flows of an installed package from any folder (flow runs start there)::

    prefect deploy --all --prefect-file "$(python -m alchemy_obs.flows)"
"""

from alchemy_obs.shipped import PREFECT_YAML

if __name__ == "__main__":
    print(PREFECT_YAML)
