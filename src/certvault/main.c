/* certvault: the command line client of certvaultd's API, and its sync agent. */
#include "certvault/cli.h"

int main(int argc, char **argv)
{
	return cv_cli_main(argc, argv);
}
