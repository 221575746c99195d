from streamjobs.cli import main

main()
