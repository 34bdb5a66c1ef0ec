from dumpsafe.cli import main

main()
