from rabbitq.cli.main import main

main()
