"""params.yaml: its schema (`schema`: every key typed, ranged and named, no defaults), the error
messages that name the key (`messages`) and the check_params stage (`check_params`)."""
