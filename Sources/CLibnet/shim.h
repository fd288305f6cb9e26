#ifndef MPTRACEBOX_CLIBNET_SHIM_H
#define MPTRACEBOX_CLIBNET_SHIM_H
#include <libnet.h>
#endif
