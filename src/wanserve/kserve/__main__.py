from wanserve.kserve.server import main

main()
