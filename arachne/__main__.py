from arachne.cli import main

main()
