from dumpsafe.fronts.cli import main

main()
