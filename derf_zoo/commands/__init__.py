"""derf-zoo subcommands other than Lightning's fit/validate/test/predict."""
