/* The runtime's Check suite: one file per area, each exporting a Suite. */
#include <check.h>
#include <stdlib.h>

Suite *suite_classes(void);
Suite *suite_slabs(void);
Suite *suite_api(void);
Suite *suite_misuse(void);
Suite *suite_static(void);
Suite *suite_transfer(void);
Suite *suite_threads(void);
Suite *suite_os(void);

int main(void)
{
    SRunner *sr = srunner_create(suite_classes());
    srunner_add_suite(sr, suite_slabs());
    srunner_add_suite(sr, suite_api());
    srunner_add_suite(sr, suite_misuse());
    srunner_add_suite(sr, suite_static());
    srunner_add_suite(sr, suite_transfer());
    srunner_add_suite(sr, suite_threads());
    srunner_add_suite(sr, suite_os());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
