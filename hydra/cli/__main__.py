from hydra.cli import main

main()
