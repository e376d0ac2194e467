// tests/plugins/stand_in.cpp — a stub library standing in for a vendor library (like
// libcudnn.so.9) that a plugin needs but the machine lacks: it is linked under a SONAME that
// no file carries, so loading the plugin that needs it fails as a missing library does.
extern "C" __attribute__((visibility("default"))) int parity_test_stand_in_function(void) { return 0; }
