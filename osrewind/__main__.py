from osrewind.cli import main

main()
