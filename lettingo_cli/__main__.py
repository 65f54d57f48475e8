from lettingo_cli.cli import main

main()
