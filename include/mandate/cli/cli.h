// The `mandate` command line (DESIGN.md section 8). Every command prints readable text, or
// JSON with --json; exit status 0 on success, 1 on a refused or failed operation, 2 on a
// usage error. Commands other than serve/init/audit verify talk to the admin listener:
// address from MANDATE_ADDR, else <data_dir>/admin.addr (written by serve), else the
// config's admin_listen; token from MANDATE_TOKEN, else <data_dir>/admin.token.
#pragma once

namespace mandate::cli {

int Run(int argc, char** argv);

}  // namespace mandate::cli
