"""The plain LightGBM's parameters per modality."""
from models.boosting import DEFAULT_PARAMS, plain_params


def test_images_get_their_own_trees_and_the_user_has_the_last_word():
    image = plain_params("image")
    assert (image["n_estimators"], image["num_leaves"], image["colsample_bytree"]) == (1500, 7, 0.1)
    assert image["learning_rate"] == DEFAULT_PARAMS["learning_rate"]
    assert plain_params("audio") == DEFAULT_PARAMS
    assert plain_params("image", {"num_leaves": 31})["num_leaves"] == 31
    assert plain_params("clip", {"n_estimators": 50})["n_estimators"] == 50
