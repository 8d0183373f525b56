"""skillscale's ground floor: what every package needs and nothing else.

    skillscale.errors   InputError (one line, exit status 2) and the one-line argparse parser
    skillscale.atomic   atomic writes for every file where state lives

It imports nothing of the project, so fitting, trainers, kernels and scheduler may all stand on it.
The product's API lives in its packages: `from scheduler import Study, StudyConfig, run_study`.
"""
