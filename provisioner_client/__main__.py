from provisioner_client.cli import main

main()
